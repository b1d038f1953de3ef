"""The "Pre-label everything" dock widget at 1600 x 1000, driven with real Qt clicks (Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_instseg.core.instances import from_features

PLUGIN = "napari-instseg"


@pytest.fixture
def viewer_and_widget(make_napari_viewer):
    data = pytest.importorskip("stardist.data")
    image, _ = data.test_image_nuclei_2d(return_mask=True)
    viewer = make_napari_viewer(show=True)
    viewer.add_image(image, name="nuclei")
    viewer.add_labels(np.zeros(image.shape, np.uint32), name="labels")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Pre-label everything", tabify=True)
    viewer.window._qt_window.resize(1600, 1000)
    # one image and one labels layer: both chosen already
    assert widget.image_combo.value is viewer.layers["nuclei"]
    assert widget.labels_combo.value is viewer.layers["labels"]
    widget.backend_combo.value = "classic"
    return viewer, widget


def _click(button):
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    QTest.mouseClick(button.native, Qt.MouseButton.LeftButton)


def test_prelabel_the_image_in_a_worker_then_undo_in_one_step(viewer_and_widget, qtbot):
    viewer, widget = viewer_and_widget
    layer = viewer.layers["labels"]
    assert widget.native.isVisible() and widget.run_button.native.width() > 50
    widget.tile_spin.value = 256  # four tiles with a halo, stitched
    _click(widget.run_button)
    qtbot.waitUntil(lambda: not widget.running and widget.last_summary is not None, timeout=60000)
    table = from_features(layer.features)
    assert len(table) > 80 and set(table["source"]) == {"classic-auto"} and set(table["review"]) == {"pre-label"}
    assert "committed as pre-labels (classic-auto)" in widget.status.value
    from napari_instseg._widgets._binding import layer_session

    session = layer_session(layer).session
    assert all(0 <= session.prelabels[i].score <= 1 for i in table.index)
    layer_session(layer).run("undo")
    assert layer.data.max() == 0 and len(from_features(layer.features)) == 0
    # a second run works the same
    _click(widget.run_button)
    qtbot.waitUntil(lambda: not widget.running and len(from_features(layer.features)) > 80, timeout=60000)


def test_progress_in_the_panel_and_cancel_commits_nothing(viewer_and_widget, qtbot):
    viewer, widget = viewer_and_widget
    widget.tile_spin.value = 64  # 64 tiles: time to cancel
    widget.halo_spin.value = 16
    _click(widget.run_button)
    assert widget.cancel_button.enabled and not widget.run_button.enabled
    bar = widget.progress.native
    qtbot.waitUntil(lambda: bool(widget.batch.reports) and widget.batch.reports[-1][0] >= 2, timeout=60000)
    assert bar.isVisible() and bar.maximum() == 64 and widget.batch.reports[0] == (0, 64, "")
    assert widget.progress.label.endswith("/ 64")
    _click(widget.cancel_button)
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    assert viewer.layers["labels"].data.max() == 0 and "cancelled after" in widget.status.value
    assert "nothing committed" in widget.status.value and not bar.isVisible() and widget.run_button.enabled


def test_default_tile_is_the_backends_as_on_the_command_line(viewer_and_widget):
    from napari_instseg.core.prompting.registry import AUTO_TILE_PX

    _viewer, widget = viewer_and_widget
    assert widget.tile_spin.value == AUTO_TILE_PX["classic"] == 512
    widget.backend_combo.value = "sam2"
    assert widget.tile_spin.value == AUTO_TILE_PX["sam2"] == 1024
    widget.tile_spin.value = 256  # chosen: kept across backends
    widget.backend_combo.value = "classic"
    assert widget.tile_spin.value == 256


def test_prelabel_only_the_view(viewer_and_widget, qtbot, monkeypatch):
    monkeypatch.setenv("NAPARI_INSTSEG_NOTHREADS", "1")
    viewer, widget = viewer_and_widget
    viewer.scene.camera.center = (128, 128)
    viewer.scene.camera.zoom = 4.0
    qtbot.wait(200)  # the canvas redraws and the layer's visible corners follow
    widget.extent_combo.value = "view"
    y0, x0, y1, x1 = widget._frame(viewer.layers["labels"])
    assert 0 < y1 - y0 < 512 and 0 < x1 - x0 < 512
    _click(widget.run_button)
    labels = viewer.layers["labels"].data
    assert labels.max() > 3
    outside = np.ones(labels.shape, bool)
    outside[y0:y1, x0:x1] = False
    assert not labels[outside].any()


def test_prelabel_a_slide_window_reads_its_region(make_napari_viewer, qtbot, monkeypatch):
    monkeypatch.setenv("NAPARI_INSTSEG_NOTHREADS", "1")
    data = pytest.importorskip("stardist.data")
    image, _ = data.test_image_nuclei_2d(return_mask=True)
    slide = np.zeros((1024, 1024), image.dtype)
    slide[512:, 512:] = image  # the nuclei are in the bottom-right window only
    viewer = make_napari_viewer(show=True)
    viewer.add_image(slide, name="slide")
    region = (512, 512, 1024, 1024)
    window = viewer.add_labels(
        np.zeros((512, 512), np.uint32), name="slide window", translate=(512, 512), metadata={"instseg_window": region}
    )
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Pre-label everything")
    widget.image_combo.value = viewer.layers["slide"]
    widget.labels_combo.value = window
    widget.backend_combo.value = "classic"
    _click(widget.run_button)
    assert window.data.max() > 80 and widget.last_summary.n_committed == window.data.max()


def test_a_store_held_by_another_session_is_refused_before_the_run(make_napari_viewer, qtbot, tmp_path):
    from napari_instseg.core.store import AnnotationStore

    image = np.zeros((128, 128), np.uint8)
    image[30:50, 30:50] = 200
    path = tmp_path / "cells.zarr"
    AnnotationStore.create(path, np.zeros((128, 128), np.uint32), image={"file_name": "cells.tif"}).close()
    held = AnnotationStore.open(path)  # another session holds the store's writer lock
    try:
        viewer = make_napari_viewer(show=True)
        viewer.add_image(image, name="cells")
        layer = viewer.open(str(path), plugin=PLUGIN)[-1]
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Pre-label everything")
        viewer.window._qt_window.resize(1600, 1000)
        widget.image_combo.value, widget.labels_combo.value = viewer.layers["cells"], layer
        widget.backend_combo.value = "classic"
        _click(widget.run_button)
        assert not widget.running and widget.last_summary is None  # nothing started
        assert "Nothing pre-labelled" in widget.status.value and "READ-ONLY" in widget.status.value
        assert layer.data.max() == 0
    finally:
        held.close()


def test_sam2_without_a_checkpoint_says_what_to_do(viewer_and_widget, qtbot, monkeypatch, tmp_path):
    pytest.importorskip("sam2")
    viewer, widget = viewer_and_widget
    monkeypatch.setenv("NAPARI_INSTSEG_CACHE", str(tmp_path / "no-weights"))
    monkeypatch.delenv("NAPARI_INSTSEG_SAM2_CHECKPOINT", raising=False)
    widget.backend_combo.value = "sam2"
    _click(widget.run_button)
    assert not widget.running and widget.last_summary is None  # nothing started
    assert "sam2-auto needs a SAM 2.1 checkpoint" in widget.status.value and "choose classic" in widget.status.value
    assert viewer.layers["labels"].data.max() == 0
    from napari_instseg._widgets._layout import PANEL_MAX_MIN_WIDTH

    qtbot.wait(50)  # the long message wraps: the panel stays narrow, the canvas keeps the window
    assert widget.native.minimumSizeHint().width() <= PANEL_MAX_MIN_WIDTH
    assert viewer.window._qt_viewer.canvas.native.width() >= 800


def test_sam2_uses_the_checkpoint_chosen_in_the_prompt_panel(
    make_napari_viewer, qtbot, monkeypatch, tmp_path, sam2_checkpoint, ihc_image, loose_auto_settings
):
    from napari_instseg.core.prompting import auto

    monkeypatch.setenv("NAPARI_INSTSEG_NOTHREADS", "1")
    monkeypatch.setenv("NAPARI_INSTSEG_CACHE", str(tmp_path / "no-weights"))  # the standard lookup finds none
    monkeypatch.delenv("NAPARI_INSTSEG_SAM2_CHECKPOINT", raising=False)
    monkeypatch.setitem(auto.PRESETS, "cells", loose_auto_settings)  # random weights: let masks through
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.ascontiguousarray(ihc_image[:256, :256]), name="ihc")
    labels = viewer.add_labels(np.zeros((256, 256), np.uint32), name="labels")
    _, prompt = viewer.window.add_plugin_dock_widget(PLUGIN, "Prompt", tabify=True)
    prompt.labels_combo.value = labels
    prompt.checkpoint_edit.value = str(sam2_checkpoint)  # chosen, never prompted with
    prompt.device_combo.value = "cpu"
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Pre-label everything", tabify=True)
    viewer.window._qt_window.resize(1600, 1000)
    widget.image_combo.value, widget.labels_combo.value = viewer.layers["ihc"], labels
    widget.backend_combo.value = "sam2"
    _click(widget.run_button)
    assert "committed as pre-labels (sam2-auto)" in widget.status.value, widget.status.value
    assert widget.last_summary.n_committed >= 1 and labels.data.max() >= 1
    assert widget._prompter.checkpoint == sam2_checkpoint and widget._prompter.device == "cpu"


@pytest.mark.parametrize("removed", ["nuclei", "labels"])
def test_removing_a_layer_of_the_run_cancels_it(make_napari_viewer, qtbot, removed):
    data = pytest.importorskip("stardist.data")
    image, _ = data.test_image_nuclei_2d(return_mask=True)
    # Removing an image layer while a run is on crashes vispy's glDrawArrays under Xvfb's
    # llvmpipe in a painted window (cancelling does not avoid it: see CHANGELOG / report), so
    # that case runs with the window hidden; the labels case in the shown 1600 x 1000 window.
    viewer = make_napari_viewer(show=removed == "labels")
    viewer.add_image(image, name="nuclei")
    labels = viewer.add_labels(np.zeros(image.shape, np.uint32), name="labels")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Pre-label everything", tabify=True)
    viewer.window._qt_window.resize(1600, 1000)
    widget.backend_combo.value = "classic"
    widget.tile_spin.value = 64  # 64 tiles: still running when the layer goes
    widget.halo_spin.value = 16
    _click(widget.run_button)
    qtbot.waitUntil(lambda: bool(widget.batch.reports) and widget.batch.reports[-1][0] >= 1, timeout=60000)
    viewer.layers.remove(viewer.layers[removed])
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    qtbot.wait(300)  # let the canvas redraw without the layer before the viewer closes
    assert f"layer {removed} was removed: pre-labelling cancelled, nothing committed" in widget.status.value
    assert labels.data.max() == 0 and widget.last_summary is None and widget.run_button.enabled
    assert widget.batch.reports[-1][0] < 64  # stopped between tiles, not run to the end


@pytest.mark.parametrize("three_d", ["image", "labels"])
def test_3d_layers_are_refused_with_a_message(make_napari_viewer, qtbot, three_d):
    viewer = make_napari_viewer(show=True)
    stack = np.zeros((5, 64, 64), np.uint8)
    stack[:, 20:40, 20:40] = 200
    viewer.add_image(stack if three_d == "image" else stack[0], name="cells")
    labels = viewer.add_labels(np.zeros((5, 64, 64) if three_d == "labels" else (64, 64), np.uint32), name="labels")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Pre-label everything")
    viewer.window._qt_window.resize(1600, 1000)
    widget.backend_combo.value = "classic"
    _click(widget.run_button)
    assert not widget.running and widget.last_summary is None and labels.data.max() == 0
    assert f"3-D layers are not supported: {three_d} layer" in widget.status.value
    assert "has shape (5, 64, 64)" in widget.status.value
    assert "Choose a 2-D image / labels layer, or a plane" in widget.status.value


def test_undo_and_redo_a_run_from_this_panel_keys_and_buttons(viewer_and_widget, qtbot, monkeypatch):
    from _canvas import key, show_at_size

    monkeypatch.setenv("NAPARI_INSTSEG_NOTHREADS", "1")
    viewer, widget = viewer_and_widget
    show_at_size(viewer, qtbot)  # only this panel is open: no Instances panel
    layer = viewer.layers["labels"]
    _click(widget.run_button)
    n_run = len(from_features(layer.features))
    assert n_run > 80
    key(viewer, qtbot, "Z", "Alt")  # the whole run is one step
    assert layer.data.max() == 0 and len(from_features(layer.features)) == 0
    assert f"Undid commit-many of {n_run} instance(s) in labels" in widget.status.value
    key(viewer, qtbot, "Y", "Alt")
    assert len(from_features(layer.features)) == n_run and layer.data.max() > 0
    _click(widget.undo_button)
    assert len(from_features(layer.features)) == 0
    _click(widget.undo_button)
    assert "Nothing to undo in labels" in widget.status.value
    _click(widget.redo_button)
    assert len(from_features(layer.features)) == n_run
    # with the Instances panel open too, the keys are its (same layer): undo still works
    _, instances = viewer.window.add_plugin_dock_widget(PLUGIN, "Instances", tabify=True)
    instances.labels_combo.value = layer
    key(viewer, qtbot, "Z", "Alt")
    assert len(from_features(layer.features)) == 0 and "Undid" in instances.status.value


def test_a_fallback_key_handler_answers_only_alone():
    from napari.components import ViewerModel

    from napari_instseg._widgets._keys import offer, trigger, withdraw

    viewer, calls = ViewerModel(), []

    def instances_undo():
        calls.append("instances")

    def auto_undo():
        calls.append("auto")

    offer(viewer, {"undo": instances_undo})
    offer(viewer, {"undo": auto_undo}, fallback=True)  # opened later: still second
    trigger(viewer, "undo")
    withdraw(viewer, {"undo": instances_undo})  # the Instances panel closes
    trigger(viewer, "undo")
    assert calls == ["instances", "auto"]
