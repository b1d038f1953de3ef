"""``pip install napari-instseg`` without the ``sam2`` extra: the core works with torch and
sam2 absent (their imports blocked), and asking for SAM 2 names the extra to install."""

import subprocess
import sys

_PROBE = r"""
import importlib, json, pkgutil, sys, tempfile
from pathlib import Path

BLOCKED = ("torch", "torchvision", "sam2", "triton")

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Block())
import importlib.util
_find_spec = importlib.util.find_spec
def find_spec(name, package=None):  # what pip install without the extra looks like
    return None if name.split(".")[0] in BLOCKED else _find_spec(name, package)
importlib.util.find_spec = find_spec

import numpy as np
import napari_instseg.core as core
for info in pkgutil.walk_packages(core.__path__, prefix="napari_instseg.core."):
    importlib.import_module(info.name)

from napari_instseg.core import AnnotationSession, AnnotationStore, open_slide
from napari_instseg.core.coco import AnnotatedImage, export_coco, import_coco
from napari_instseg.core.geojson import geojson_to_labels, labels_to_geojson
from napari_instseg.core.prompting import default_backend, make_prompter
from napari_instseg.core.prompting.sam2 import MissingExtraError
from napari_instseg.core.qa import run_qa, stratified_ap
from napari_instseg.core.synthetic import overlapping_cells

cells = overlapping_cells((96, 96), n_cells=6, seed=1)
coco = export_coco([AnnotatedImage(cells.labels_yx, cells.table, "cells.tif")], cells.protocol).coco
back = import_coco(coco).images[0]
assert np.array_equal(back.labels_yx, cells.labels_yx)
dt = [dict(a, score=1.0) for a in coco["annotations"]]
assert stratified_ap(coco, dt)["overall"].AP == 1.0
out = Path(tempfile.mkdtemp())
run_qa(coco, dt, out / "qa")
assert (out / "qa" / "report.html").is_file()
labels, table = geojson_to_labels(labels_to_geojson(cells.labels_yx, cells.table, cells.protocol), (96, 96), cells.protocol)
assert len(table) == len(cells.table)

assert default_backend() == "classic"
session = AnnotationSession(np.zeros((96, 96), np.uint32), prompter=make_prompter("classic"))
session.set_image(cells.image_yx)
session.prompt(points_yx=[[48, 48]])
assert session.commit().instance_id == 1
with AnnotationStore.create(out / "s.zarr", session.labels_yx) as store:
    store.session().delete(1)
assert open_slide(cells.image_yx).shape_yx == (96, 96)

try:
    make_prompter("sam2")
except MissingExtraError as exc:
    assert "napari-instseg[sam2]" in str(exc), exc
else:
    raise AssertionError("SAM 2 without its extra did not say what to install")
assert not any(m.split(".")[0] in BLOCKED for m in sys.modules), [m for m in sys.modules if m.split(".")[0] in BLOCKED]
print("ok")
"""


def test_core_works_without_torch_and_sam2():
    result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
