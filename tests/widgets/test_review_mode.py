"""The review mode: a keyboard pass over pre-labels, driven with real keys on the canvas."""

import numpy as np
import pytest
from _canvas import drag, key, show_at_size

from napari_instseg.core.instances import from_features

PLUGIN = "napari-instseg"


def _square(y, x, size=10):
    mask = np.zeros((128, 128), bool)
    mask[y : y + size, x : x + size] = True
    return mask


@pytest.fixture
def reviewing(make_napari_viewer, qtbot, monkeypatch):
    """Four pre-labels (as a batch run leaves them) and the review panel, started."""
    monkeypatch.setenv("NAPARI_INSTSEG_NOTHREADS", "1")
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((128, 128), np.uint8), name="cells")
    labels = viewer.add_labels(np.zeros((128, 128), np.uint32), name="cells instances")
    from napari_instseg._widgets._binding import layer_session

    binding = layer_session(labels)
    for y, x in ((10, 10), (10, 60), (70, 10), (70, 60)):
        binding.run("commit", _square(y, x), source="sam2")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Review pre-labels")
    show_at_size(viewer, qtbot)
    widget.start()
    return viewer, widget, labels


def test_one_key_per_decision_edit_with_two_and_progress_is_shown(reviewing, qtbot):
    viewer, widget, labels = reviewing
    assert widget.current == 1 and widget.progress.value == "0 / 4 reviewed"
    assert labels.selected_label == 1
    key(viewer, qtbot, "Y", "Shift")  # accept: one action, and on to the next
    assert widget.current == 2 and widget.progress.value == "1 / 4 reviewed"
    key(viewer, qtbot, "R", "Shift")  # reject
    assert widget.current == 3
    key(viewer, qtbot, "E", "Shift")  # edit: paint with napari's brush on the canvas
    assert labels.mode == "paint"
    labels.brush_size = 6
    drag(viewer, qtbot, (75, 22), (75, 30))
    key(viewer, qtbot, "F", "Shift")  # finish: recorded, accepted as corrected
    table = from_features(labels.features)
    assert table.loc[1, "review"] == "accepted" and table.loc[2, "review"] == "rejected"
    assert table.loc[3, "review"] == "corrected" and table.loc[3, "prelabel_iou"] < 1
    assert widget.current == 4 and widget.progress.value == "3 / 4 reviewed"
    # it remembers where it was: stop, start again, same place
    widget.stop()
    widget.start()
    assert widget.current == 4
    key(viewer, qtbot, "Y", "Shift")
    assert widget.progress.value == "4 / 4 reviewed" and "Every pre-label" in widget.item_label.value


def test_review_works_on_a_slide_window_layer(make_napari_viewer, qtbot, monkeypatch):
    """A window layer at its slide offset: zooming goes to the slide position."""
    monkeypatch.setenv("NAPARI_INSTSEG_NOTHREADS", "1")
    from napari_instseg._widgets._binding import layer_session
    from napari_instseg._widgets.instances import viewer_camera

    viewer = make_napari_viewer()
    window = viewer.add_labels(np.zeros((128, 128), np.uint32), name="slide window", translate=(5000, 9000))
    layer_session(window).run("commit", _square(40, 40), source="sam2")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Review pre-labels")
    widget.start()
    np.testing.assert_allclose(viewer_camera(viewer).center[-2:], (5045, 9045))
    widget._on_accept()
    assert widget.progress.value == "1 / 1 reviewed"


def _prelabels_file(tmp_path):
    """A COCO file of four pre-labels, as ``napari-instseg demo`` / ``prelabel`` write it (no
    proposals in it); one of them at the image's right edge."""
    from napari_instseg.core.coco import AnnotatedImage, export_coco, save_coco
    from napari_instseg.core.session import AnnotationSession

    batch = AnnotationSession(np.zeros((128, 128), np.uint32))
    for y, x in ((10, 10), (10, 60), (70, 10), (70, 118)):
        batch.commit(_square(y, x), source="classic")
    path = tmp_path / "annotations.json"
    save_coco(export_coco([AnnotatedImage(batch.labels_yx, batch.table, "cells.tif")], batch.protocol).coco, path)
    return path


def test_reviewing_a_coco_file_records_accepted_and_corrected_with_iou(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    """The walkthrough on a file: Shift+Y gives ``accepted`` with IoU 1, an edit then Shift+F
    gives ``corrected`` with IoU < 1, and the count grows over a stable total."""
    monkeypatch.setenv("NAPARI_INSTSEG_NOTHREADS", "1")
    viewer = make_napari_viewer()
    (labels,) = viewer.open(str(_prelabels_file(tmp_path)), plugin=PLUGIN)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Review pre-labels")
    show_at_size(viewer, qtbot)
    widget.labels_combo.value = labels
    widget.start()
    assert widget.current == 1 and widget.progress.value == "0 / 4 reviewed"
    key(viewer, qtbot, "Y", "Shift")
    table = from_features(labels.features)
    assert table.loc[1, "review"] == "accepted" and table.loc[1, "prelabel_iou"] == 1.0
    assert widget.current == 2 and widget.progress.value == "1 / 4 reviewed"
    key(viewer, qtbot, "E", "Shift")
    labels.brush_size = 4
    drag(viewer, qtbot, (15, 72), (15, 76))  # paint beyond the square's right side
    key(viewer, qtbot, "F", "Shift")
    table = from_features(labels.features)
    assert table.loc[2, "review"] == "corrected" and 0 < table.loc[2, "prelabel_iou"] < 1
    assert widget.progress.value == "2 / 4 reviewed"
    key(viewer, qtbot, "R", "Shift")
    assert widget.progress.value == "3 / 4 reviewed"


def test_the_current_prelabel_is_outlined_and_the_view_stays_on_the_image(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    """At the image edge the zoomed view shows no black band; the pre-label in view is
    outlined (its contour) and selected."""
    from napari_instseg._widgets.instances import viewer_camera
    from napari_instseg._widgets.review_mode import HIGHLIGHT_LAYER

    monkeypatch.setenv("NAPARI_INSTSEG_NOTHREADS", "1")
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((128, 128), np.uint8), name="cells")
    (labels,) = viewer.open(str(_prelabels_file(tmp_path)), plugin=PLUGIN)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Review pre-labels")
    show_at_size(viewer, qtbot)
    widget.labels_combo.value = labels
    viewer.layers.selection.active = labels
    widget.start()
    for _ in range(3):
        key(viewer, qtbot, "Right", "Shift")
    assert widget.current == 4 and labels.selected_label == 4
    # the square at x 118..128 touches the right edge: the view's right side is the image's
    camera = viewer_camera(viewer)
    _, width = viewer.canvas.size
    right = camera.center[-1] + width / (2 * camera.zoom)
    assert right <= 128 and camera.zoom > 4
    outline = viewer.layers[HIGHLIGHT_LAYER]
    (polygon,) = outline.data
    assert polygon[:, 0].min() == pytest.approx(69.5) and polygon[:, 1].max() == pytest.approx(127.5)
    assert viewer.layers.selection.active is labels  # keys and painting still go to the labels
    widget.stop()
    assert HIGHLIGHT_LAYER not in viewer.layers
