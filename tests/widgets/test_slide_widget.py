"""The Slide dock widget: a window over a slide-sized store, painted, moved, prompted."""

import numpy as np
import pytest
import zarr

from napari_instseg.core.store import AnnotationStore

PLUGIN = "napari-instseg"


@pytest.fixture
def slide_viewer(make_napari_viewer, tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_INSTSEG_NOTHREADS", "1")
    root = zarr.open_group(str(tmp_path / "slide.zarr"), mode="w")
    image = np.full((4096, 4096), 30, np.uint8)
    yy, xx = np.mgrid[:64, :64]
    blob = ((yy - 32) ** 2 + (xx - 32) ** 2 <= 12**2) * 200
    for y, x in ((500, 500), (1000, 2020)):  # one nucleus across the seam at x = 2048
        image[y : y + 64, x : x + 64] = np.maximum(image[y : y + 64, x : x + 64], blob)
    root.create_array("0", data=image, chunks=(512, 512))
    root.create_array("1", data=image[::4, ::4], chunks=(512, 512))
    viewer = make_napari_viewer()
    viewer.add_image([root["0"], root["1"]], multiscale=True, name="slide")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Slide")
    widget.slide_combo.value = viewer.layers["slide"]
    widget.tile_spin.value = 2048
    widget.store_edit.value = str(tmp_path / "labels.zarr")
    widget._on_open_store()
    return viewer, widget, tmp_path / "labels.zarr"


def test_paint_in_a_window_move_on_and_find_it_in_the_store(slide_viewer):
    viewer, widget, store_path = slide_viewer
    layer = viewer.layers["slide window"]
    assert layer.data.shape == (2048 + 64, 2048 + 64) and tuple(layer.translate) == (0, 0)
    layer.brush_size = 10
    layer.paint((300, 300), 7)  # a person paints instance 7 in the first window
    widget._on_next_tile()  # moving on records and saves the paint
    moved = viewer.layers["slide window"]
    assert tuple(moved.translate) == (0, 2048 - 64)
    with AnnotationStore.open(store_path, read_only=True) as saved:
        painted = saved.read_labels((290, 290, 311, 311))
        assert (painted == 7).sum() > 50 and 7 in saved.table.index


def test_prompt_in_a_window_and_a_seam_object_keeps_its_id(slide_viewer):
    viewer, widget, store_path = slide_viewer
    _, prompt = viewer.window.add_plugin_dock_widget(PLUGIN, "Prompt")
    prompt.backend_combo.value = "classic"
    prompt.image_combo.value = viewer.layers["slide"]
    prompt.labels_combo.value = viewer.layers["slide window"]
    prompt.points_layer.add([[1032, 2040]])  # the nucleus across the seam, in the first window's halo
    result = prompt._on_commit()
    assert result is not None
    with AnnotationStore.open(store_path, read_only=True) as saved:
        assert (saved.read_labels((1020, 2030, 1045, 2060)) == result.instance_id).any()
    widget.show_window((1000, 2100))  # the tile to the right: the halo shows the same object
    window = viewer.layers["slide window"]
    assert result.instance_id in np.unique(window.data)
