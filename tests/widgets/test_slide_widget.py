"""The Slide dock widget: a window over a slide-sized store, painted, moved, prompted."""

import numpy as np
import pytest
import zarr

from napari_instseg.core.store import AnnotationStore

PLUGIN = "napari-instseg"


@pytest.fixture
def slide_viewer(make_napari_viewer, tmp_path, monkeypatch):
    return _open_slide(make_napari_viewer, tmp_path, monkeypatch)


def _open_slide(make_napari_viewer, tmp_path, monkeypatch):
    """A 4096 x 4096 slide with its store (tmp_path / labels.zarr, made when absent) open in
    the Slide panel (tile 2048)."""
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


def test_real_clicks_prompt_in_a_window_away_from_the_slide_origin(slide_viewer, qtbot):
    """A window at x = 1984 (slide pixels): the click is a slide position, the prompt is made
    in the window's own pixels, and the committed instance lands in the store at its place."""
    from _canvas import click, key, show_at_size

    from napari_instseg._widgets.instances import viewer_camera

    viewer, widget, store_path = slide_viewer
    _, prompt = viewer.window.add_plugin_dock_widget(PLUGIN, "Prompt")
    prompt.backend_combo.value = "classic"
    prompt.image_combo.value = viewer.layers["slide"]
    widget.tile_spin.value = 512
    widget.show_window((1100, 2100))  # a window far from the origin, 640 x 640 px
    window = viewer.layers["slide window"]
    assert tuple(window.translate) == (1024 - 64, 2048 - 64)
    prompt.labels_combo.value = window
    viewer.layers.selection.active = prompt.points_layer
    show_at_size(viewer, qtbot)
    camera = viewer_camera(viewer)
    camera.center, camera.zoom = (1100, 2100), 2.0
    qtbot.wait(50)
    click(viewer, qtbot, (1032, 2062))  # the nucleus across the seam (slide pixels)
    assert prompt.session.candidate is not None, prompt.status.value
    assert prompt.session.candidate[1032 - 960, 2062 - 1984]
    key(viewer, qtbot, "C", "Shift")
    instance = int(window.data[1032 - 960, 2062 - 1984])
    assert instance > 0
    with AnnotationStore.open(store_path, read_only=True) as saved:
        assert saved.read_labels((1032, 2062, 1033, 2063))[0, 0] == instance


CROSSING = {1: (1100, 1960, 1140, 2010), 2: (1200, 1960, 1240, 2010), 3: (1300, 1960, 1340, 2010)}
"""Pre-labels across the left edge (x = 1984) of the window at tile (1024, 2048), 512 px +
64 px halo: 24 of their 50 columns lie outside it."""


def test_reviewing_prelabels_across_a_window_edge_measures_whole_objects(
    make_napari_viewer, tmp_path, monkeypatch, qtbot
):
    """Review mode on a slide window, with real keys and a brush drag on the canvas: accept,
    edit then finish, reject - each decided on the whole object, the store's proposals kept."""
    from _canvas import drag, key, show_at_size

    store_path = tmp_path / "labels.zarr"
    with AnnotationStore.create(store_path, (4096, 4096)) as store:
        masks = []
        for y0, x0, y1, x1 in CROSSING.values():
            mask = np.zeros((4096, 4096), bool)
            mask[y0:y1, x0:x1] = True
            masks.append(mask)
        store.session().commit_many(masks, scores=[0.9, 0.8, 0.7], source="sam2")
    viewer, widget, _ = _open_slide(make_napari_viewer, tmp_path, monkeypatch)
    widget.tile_spin.value = 512
    widget.show_window((1100, 2100))
    window = viewer.layers["slide window"]
    assert tuple(window.translate) == (1024 - 64, 2048 - 64)
    _, review = viewer.window.add_plugin_dock_widget(PLUGIN, "Review pre-labels")
    show_at_size(viewer, qtbot)
    review.labels_combo.value = window
    review.start()
    assert review.current == 1 and review.progress.value == "0 / 3 reviewed"
    key(viewer, qtbot, "Y", "Shift")  # accept the unchanged pre-label
    key(viewer, qtbot, "E", "Shift")  # edit the second: paint below it, inside the window
    window.brush_size = 4
    drag(viewer, qtbot, (1244, 1995), (1244, 2005))
    key(viewer, qtbot, "F", "Shift")
    key(viewer, qtbot, "R", "Shift")  # reject the third
    assert review.progress.value == "3 / 3 reviewed"
    widget.show_window((500, 500))  # leave the window
    store = widget.store
    table, labels = store.table, store.read_labels((1000, 1900, 1400, 2100))
    assert table.loc[1, "review"] == "accepted" and table.loc[1, "prelabel_iou"] == 1.0
    added = int((labels == 2).sum()) - 2000  # the brush's pixels (the proposal: 40 x 50 px)
    assert added > 0 and table.loc[2, "review"] == "corrected"
    assert table.loc[2, "prelabel_iou"] == pytest.approx(2000 / (2000 + added))  # the whole object's IoU
    assert table.loc[3, "review"] == "rejected" and not (labels == 3).any()  # beyond the window too
    proposals = store.read_side("prelabel")
    assert {i: (r.proposal.bbox_yx, r.proposal.area_px, r.score) for i, r in proposals.items()} == {
        i: (box, 2000, score) for (i, box), score in zip(CROSSING.items(), (0.9, 0.8, 0.7), strict=True)
    }
