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
