"""The Track dock widget in a real napari viewer at 1600 x 1000, driven by Qt events (Xvfb).

The model is SAM 2.1 tiny with random weights at a 64-pixel input: plumbing only.
"""

import numpy as np
import pytest
import torch
from qtpy.QtCore import QPoint, Qt
from qtpy.QtTest import QTest

from napari_instseg.core.instances import from_features

PLUGIN = "napari-instseg"
SHAPE = (6, 40, 56)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def panel(make_napari_viewer, sam2_checkpoint):
    from napari_instseg.core.prompting.sam2 import avoid_llvm_clash

    avoid_llvm_clash(force=True)  # the canvas loads Mesa's LLVM: keep triton away from torch
    viewer = make_napari_viewer()
    stack = np.random.default_rng(0).integers(0, 80, SHAPE, dtype=np.uint8)
    for t in range(SHAPE[0]):
        stack[t, 12:26, 6 + 4 * t : 20 + 4 * t] = 230
    viewer.add_image(stack, name="movie")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Track")
    viewer.window._qt_window.resize(1600, 1000)
    widget.image_combo.value = viewer.layers["movie"]
    widget.checkpoint_edit.value = sam2_checkpoint
    widget.size_spin.value = 64
    viewer.layers.selection.active = widget.points_layer
    viewer.dims.set_current_step(0, 2)
    viewer.reset_view()
    return widget, viewer


def _canvas_click(viewer, y, x, qtbot, modifier=Qt.NoModifier):
    canvas = viewer.window._qt_viewer.canvas
    transform = canvas.view.transform * canvas.view.scene.transform
    px, py = transform.map([x, y, 0, 1])[:2]
    native = canvas.native
    native.setFocus()
    QTest.mouseClick(native, Qt.LeftButton, modifier, QPoint(round(px), round(py)))
    qtbot.wait(50)


def _click_button(button, qtbot):
    QTest.mouseClick(button.native, Qt.LeftButton)
    qtbot.wait(10)


def test_click_propagate_export_undo(panel, qtbot, tmp_path):
    widget, viewer = panel
    assert viewer.window._qt_window.width() == 1600
    assert viewer.window._qt_viewer.canvas.native.width() > 500  # a real canvas, not a sliver
    _canvas_click(viewer, 19, 16, qtbot)
    _canvas_click(viewer, 35, 5, qtbot, Qt.ShiftModifier)  # a negative point of object 1
    widget.object_spin.value = 2
    _canvas_click(viewer, 33, 45, qtbot)
    data = widget.points_layer.data
    assert len(data) == 3 and (data[:, 0] == 2).all()
    np.testing.assert_allclose(data[0, 1:], [19, 16], atol=1)
    assert widget.points_layer.features["object"].tolist() == [1, 1, 2]
    assert widget.points_layer.features["positive"].tolist() == [True, False, True]
    _click_button(widget.propagate_button, qtbot)
    qtbot.waitUntil(lambda: widget.propagate_button.enabled, timeout=120_000)
    assert widget.last_result == "done", widget.status.value
    assert widget.progress.value == widget.progress.max == 7  # frames 2..5 forward, 2..0 backward
    layer = viewer.layers["movie tracks"]
    assert layer.data.shape == SHAPE and set(np.unique(layer.data)) <= {0, 1, 2}
    table = from_features(layer.features)
    assert table.index.tolist() == [1, 2] and (table["source"] == "sam2").all()
    assert len(widget.points_layer.data) == 0
    widget.export_edit.value = tmp_path / "movie.json"
    _click_button(widget.export_button, qtbot)
    from napari_instseg.core.coco.video import import_coco_video

    np.testing.assert_array_equal(import_coco_video(tmp_path / "movie.json").labels_tyx, layer.data)
    _click_button(widget.undo_button, qtbot)
    assert not layer.data.any() and widget.status.value == "Propagation undone."
    assert len(layer.features) == 0  # the new tracks were part of the one undo step


def test_cancel_stops_between_frames(panel, qtbot):
    widget, viewer = panel
    _canvas_click(viewer, 19, 16, qtbot)
    worker = widget._on_propagate()
    worker.yielded.connect(lambda *_: widget._on_cancel())  # the user presses Cancel at once
    qtbot.waitUntil(lambda: widget.propagate_button.enabled, timeout=120_000)
    assert widget.last_result == "cancelled"
    assert widget.progress.value < widget.progress.max
    assert len(widget.stack.records) == widget.progress.value
    assert widget.stack.undo() == "propagate" and not widget.stack.labels_tyx.any()


def test_an_existing_instance_is_the_prompt(panel, qtbot):
    widget, _ = panel
    layer = widget.tracks_layer
    layer.data[2, 12:26, 14:28] = 5
    widget.instance_spin.value = 5
    _click_button(widget.use_instance_button, qtbot)
    assert "Instance 5 on frame 2" in widget.status.value
    widget.direction_combo.value = "forward"
    _click_button(widget.propagate_button, qtbot)
    qtbot.waitUntil(lambda: widget.propagate_button.enabled, timeout=120_000)
    assert widget.last_result == "done", widget.status.value
    assert set(np.unique(layer.data)) <= {0, 5} and (layer.data[2] == 5).sum() == 14 * 14
