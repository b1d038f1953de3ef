"""Files other tools wrote, opened through napari's own API with the plugin's reader."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

PLUGIN = "napari-instseg"
DATA = Path(__file__).resolve().parents[1] / "data"


def test_qupath_geojson_lands_on_the_open_image_with_its_points(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((1000, 1000), np.uint16), name="TD_01")  # the image QuPath annotated
    path = tmp_path / "objects.geojson"  # no image beside it: the open image gives the size
    shutil.copy(DATA / "qupath_single_cells.geojson", path)
    viewer.open(str(path), plugin=PLUGIN)
    labels = viewer.layers["objects objects"]
    points = viewer.layers["objects points"]
    assert len(labels.features) == 128  # 121 cells, the region and 6 circles
    y0, x0 = labels.translate
    assert y0 + labels.data.shape[0] <= 1000 and x0 + labels.data.shape[1] <= 1000
    assert len(np.unique(labels.data)) == 129  # every object keeps visible pixels
    assert list(points.features["name"]) == ["calib1", "calib2", "calib3"]


def test_real_svs_opens_as_a_lazy_rgb_layer(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    path = tmp_path / "slide.svs"
    shutil.copy(DATA / "cmu-1-small-region.svs", path)
    viewer.open(str(path), plugin=PLUGIN)
    layer = viewer.layers[-1]
    assert layer.rgb and layer.metadata["instseg_slide"]["shape_yx"] == [2967, 2220]
    assert np.asarray(layer.data[0][1000:1010, 1000:1010]).shape == (10, 10, 3)
