"""``prelabel IMAGE --auto`` and ``prelabel-slide --auto`` as users run them (classic, no weights)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_instseg.cli import main


@pytest.fixture(scope="module")
def dsb_files(tmp_path_factory):
    data = pytest.importorskip("stardist.data")
    image, truth = data.test_image_nuclei_2d(return_mask=True)
    folder = tmp_path_factory.mktemp("dsb")
    tifffile.imwrite(folder / "dsb.tif", image)
    tifffile.imwrite(folder / "truth.tif", truth.astype(np.uint32))
    return folder


def test_prelabel_auto_writes_scored_coco_that_qa_ranks(dsb_files, tmp_path, capsys):
    out = tmp_path / "auto.json"
    argv = ["prelabel", str(dsb_files / "dsb.tif"), "--auto", "--backend", "classic", "--auto-tile", "256"]
    assert main([*argv, "--auto-halo", "48", "--auto-workers", "2", "-o", str(out)]) == 0
    coco = json.loads(out.read_text())
    anns = coco["annotations"]
    assert len(anns) > 80 and all(0 <= a["score"] <= 1 for a in anns)
    assert {a["attributes"]["source"] for a in anns} == {"classic-auto"}
    assert {a["attributes"]["review"] for a in anns} == {"pre-label"}
    assert "committed as pre-labels (classic-auto)" in capsys.readouterr().out
    # a second run gives the same file content (deterministic), inputs untouched
    again = tmp_path / "again.json"
    assert main([*argv, "--auto-halo", "48", "-o", str(again)]) == 0
    strip = [{k: v for k, v in a.items() if k != "attributes"} for a in anns]
    assert strip == [
        {k: v for k, v in a.items() if k != "attributes"} for a in json.loads(again.read_text())["annotations"]
    ]
    # qa ranks by the score: the reference exported from the hand-made mask
    gt = tmp_path / "gt.json"
    assert main(["export", str(dsb_files / "truth.tif"), "-o", str(gt)]) == 0
    assert main(["qa", "--gt", str(gt), "--dt", str(out), "-o", str(tmp_path / "qa")]) == 0
    report = json.loads((tmp_path / "qa" / "report.json").read_text())
    assert report["overall"]["AP50"] >= 0.7  # tiled at 256 px; untiled: 0.80 (test_auto_classic)


def test_prelabel_slide_auto_commits_each_object_once(tmp_path):
    from skimage import data

    from napari_instseg.core.store import AnnotationStore

    ihc = data.immunohistochemistry()[:256, :512]
    slide = tmp_path / "ihc.tif"
    tifffile.imwrite(slide, ihc)
    store = tmp_path / "store.zarr"
    argv = ["prelabel-slide", str(slide), "--store", str(store), "--auto", "--backend", "classic", "--tile", "128"]
    assert main([*argv, "--halo", "32", "--workers", "2"]) == 0
    with AnnotationStore.open(store, read_only=True) as opened:
        labels, table = opened.read_labels(), opened.table
    assert len(table) > 30 and set(table["source"]) == {"classic-auto"}
    assert set(np.unique(labels)) - {0} == set(table.index)
    assert main([*argv, "--halo", "32"]) == 0  # rerun: tiles done are skipped, nothing doubled
    with AnnotationStore.open(store, read_only=True) as opened:
        assert len(opened.table) == len(table)
    exported = tmp_path / "slide.json"
    assert main(["export", str(store), "-o", str(exported)]) == 0
    anns = json.loads(exported.read_text())["annotations"]
    assert len(anns) == len(table) and all(0 <= a["score"] <= 1 for a in anns)
