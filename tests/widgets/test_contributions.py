"""The manifest's reader, writer and sample data, exercised through napari's own API."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_instseg.core.coco import AnnotatedImage, export_coco, save_coco
from napari_instseg.core.instances import from_features

PLUGIN = "napari-instseg"


@pytest.fixture
def coco_with_image(tmp_path, labels_and_table, protocol):
    labels, table = labels_and_table
    tifffile.imwrite(tmp_path / "tile.tif", np.zeros((*labels.shape, 3), np.uint8))
    path = tmp_path / "tile.json"
    save_coco(export_coco([AnnotatedImage(labels, table, "tile.tif")], protocol).coco, path)
    return path


def test_reader_opens_labels_with_features_and_the_image_beside(make_napari_viewer, coco_with_image, labels_and_table):
    labels, table = labels_and_table
    viewer = make_napari_viewer()
    viewer.open(str(coco_with_image), plugin=PLUGIN)
    assert [layer.name for layer in viewer.layers] == ["tile", "tile labels"]
    image_layer, labels_layer = viewer.layers
    assert image_layer.rgb
    np.testing.assert_array_equal(labels_layer.data, labels)
    pd.testing.assert_frame_equal(from_features(labels_layer.features), table)
    assert labels_layer.metadata["instseg_protocol"]["name"] == "test project"


def test_reader_declines_other_json(tmp_path):
    from napari_instseg._reader import get_reader

    (tmp_path / "settings.json").write_text(json.dumps({"theme": "dark"}))
    assert get_reader(str(tmp_path / "settings.json")) is None
    assert get_reader(str(tmp_path / "missing.json")) is None
    assert get_reader(str(tmp_path / "image.tif")) is None
    assert get_reader(str(tmp_path)) is None  # a folder that is no annotation store


def test_writer_saves_labels_and_features_as_coco(make_napari_viewer, tmp_path, coco_with_image, labels_and_table):
    labels, table = labels_and_table
    viewer = make_napari_viewer()
    viewer.open(str(coco_with_image), plugin=PLUGIN)
    layer = viewer.layers["tile labels"]
    out = tmp_path / "saved.json"
    written = layer.save(str(out), plugin=PLUGIN)
    assert written == [str(out)]
    from napari_instseg.core.coco import import_coco

    item = import_coco(out).images[0]
    np.testing.assert_array_equal(item.labels_yx, labels)
    pd.testing.assert_frame_equal(item.table, table)
    assert item.image["file_name"] == "tile.tif"


def test_writer_on_a_plain_labels_layer(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    data = np.zeros((10, 10), np.int32)
    data[2:5, 2:5] = 4
    viewer.add_labels(data, name="drawn")
    out = tmp_path / "drawn.json"
    viewer.layers["drawn"].save(str(out), plugin=PLUGIN)
    coco = json.loads(out.read_text())
    assert [a["instance_id"] for a in coco["annotations"]] == [4]
    assert coco["images"][0]["file_name"] == "drawn.tif"


def test_sample_data(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "ihc")
    assert viewer.layers[-1].rgb and viewer.layers[-1].data.shape == (512, 512, 3)
    viewer.open_sample(PLUGIN, "overlapping_cells")
    labels_layer = viewer.layers["overlapping cells labels"]
    table = from_features(labels_layer.features)
    assert set(table["occlusion"]) == {"none", "partial", "heavy"}
    assert table["occluded_fraction"].between(0, 1).all()


def test_slide_pyramid_opens_as_a_lazy_multiscale_layer(make_napari_viewer, tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
    from test_slide import _write_ome_zarr

    path = _write_ome_zarr(tmp_path / "slide.ome.zarr")
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin=PLUGIN)
    layer = viewer.layers[-1]
    assert layer.multiscale and layer.rgb and len(layer.data) == 3
    assert layer.data[0].shape == (20_000, 20_000, 3)
    assert layer.metadata["instseg_slide"]["mpp"] == 0.25
