"""The Project panel, driven as a user does: typed path, double-click, paint, one key to move on."""

from __future__ import annotations

import pytest

from napari_instseg.core.project import Project, refs_from_patterns
from napari_instseg.core.store import AnnotationStore

PLUGIN = "napari-instseg"


@pytest.fixture
def project_dir(tmp_path, ihc_image):
    import tifffile

    folder = tmp_path / "tiles"
    folder.mkdir()
    for k in range(3):
        tifffile.imwrite(folder / f"tile_{k}.tif", ihc_image[:128, k * 128 : (k + 1) * 128])
    with Project.create(tmp_path / "proj", refs_from_patterns([str(folder / "*.tif")])) as project:
        project.manifest.assign([3], "bob")
    return tmp_path / "proj"


@pytest.fixture
def panel(make_napari_viewer, project_dir, qtbot, monkeypatch):
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    monkeypatch.setenv("NAPARI_INSTSEG_NOTHREADS", "1")
    monkeypatch.setenv("NAPARI_INSTSEG_ANNOTATOR", "alice")
    viewer = make_napari_viewer(show=True)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Project")
    viewer.window._qt_window.resize(1600, 1000)
    QTest.keyClicks(widget.path_edit, str(project_dir))
    QTest.keyClick(widget.path_edit, Qt.Key.Key_Return)
    yield viewer, widget
    widget.close()


def _canvas_pos(viewer, y: float, x: float):
    from qtpy.QtCore import QPoint

    canvas = viewer.window._qt_viewer.canvas
    transform = canvas.view.transform * canvas.view.scene.transform
    cx, cy = transform.map([x, y, 0, 1])[:2]
    return QPoint(round(cx), round(cy))


def _paint_stroke(viewer, layer, y: int, x0: int, x1: int) -> None:
    from qtpy.QtCore import QEvent, QPointF, Qt
    from qtpy.QtGui import QMouseEvent
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QApplication

    native = viewer.window._qt_viewer.canvas.native
    layer.mode = "paint"
    layer.brush_size = 8
    layer.selected_label = 5
    QTest.mousePress(native, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _canvas_pos(viewer, y, x0))
    for x in range(x0, x1 + 1, 4):  # moves with the button held, delivered at once (QTest.mouseMove
        # moves the X cursor instead, whose events Xvfb may deliver after the release)
        move = QMouseEvent(
            QEvent.Type.MouseMove,
            QPointF(_canvas_pos(viewer, y, x)),
            Qt.MouseButton.NoButton,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
        )
        QApplication.sendEvent(native, move)
        QTest.qWait(10)  # napari throttles mouse moves (5 ms): let each one through
    QTest.mouseRelease(native, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _canvas_pos(viewer, y, x1))


def _key_on_canvas(viewer, key, modifier=None) -> None:
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    native = viewer.window._qt_viewer.canvas.native
    native.setFocus()
    QTest.keyClick(native, key, modifier if modifier is not None else Qt.KeyboardModifier.NoModifier)


def test_open_paint_move_on_with_one_key_submit_and_filter(panel, project_dir, qtbot):
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    viewer, widget = panel
    assert widget.model.rowCount() == 2  # alice sees images 1, 2; image 3 is bob's
    assert [widget.model.item_at(r).status for r in range(2)] == ["todo", "todo"]
    view = widget.table
    assert view.columnWidth(2) > view.fontMetrics().horizontalAdvance("pre-labelled")  # never cut to "pre-..."
    rect = view.visualRect(widget.model.index(1, 1))
    args = (view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())
    QTest.mouseClick(*args)  # a double-click as Qt sees it: press, release, then double-click
    QTest.mouseDClick(*args)
    assert widget.current.image_id == 2 and widget.current.status == "in progress"
    labels = viewer.layers["project labels"]
    assert widget.image_layer.data.shape == (128, 128, 3) and labels.data.shape == (128, 128)
    assert widget.image_layer.name == "project image 2: tile_1.tif"
    _paint_stroke(viewer, labels, 60, 40, 80)
    painted_yx = (labels.data == 5).nonzero()
    assert painted_yx[1].min() <= 40 and painted_yx[1].max() >= 80  # the whole stroke
    _key_on_canvas(viewer, Qt.Key.Key_Period)  # next unfinished: saves image 2 first
    assert widget.current.image_id == 1  # wraps around (image 3 is bob's)
    with Project.open(project_dir) as project:
        item = project.manifest.item(2)
        assert item.n_instances == 1 and item.assignee == "alice"
        with AnnotationStore.open(project.store_path(item), read_only=True) as store:
            assert (store.read_labels() == 5).sum() > 100 and 5 in store.table.index
    _key_on_canvas(viewer, Qt.Key.Key_Comma)  # previous unfinished
    assert widget.current.image_id == 2
    assert (viewer.layers["project labels"].data == 5).sum() > 100  # its labels came back
    QTest.mouseClick(widget.submit_button, Qt.MouseButton.LeftButton)
    assert widget.current.image_id == 1  # submitted, then the next one opened
    with Project.open(project_dir) as project:
        assert project.manifest.item(2).status == "submitted"
    widget.status_filter.setCurrentText("submitted")
    assert widget.model.rowCount() == 1 and widget.model.item_at(0).image_id == 2
    widget.status_filter.setCurrentText("(any)")
    widget.mine_check.setChecked(False)
    assert widget.model.rowCount() == 3
    viewer.window._qt_window.grab().save(str(project_dir / "panel.png"))


def test_someone_elses_image_and_a_locked_store_open_read_only(panel, project_dir):
    _viewer, widget = panel
    with Project.open(project_dir) as project:
        bob_item = project.manifest.item(3)
        note = widget.open_item(bob_item)
        assert "assigned to 'bob'" in note
        bobs = project.open_store(bob_item)  # alice only looks: bob's store stays free for bob
        assert not bobs.read_only
        bobs.close()
        held = project.open_store(project.manifest.item(1))  # another session holds image 1
        try:
            note = widget.open_item(project.manifest.item(1))
            assert "read-only" in note
        finally:
            held.close()


def test_keys_are_napari_actions_and_do_not_clash():
    from napari.utils.action_manager import action_manager
    from napari.utils.shortcuts import default_shortcuts

    from napari_instseg._widgets.project import register_actions

    register_actions()  # what the panel does when it opens
    from napari_instseg._widgets.instances import INSTANCE_SHORTCUTS
    from napari_instseg._widgets.project import PROJECT_ACTIONS
    from napari_instseg._widgets.prompt import SHORTCUTS

    napari_keys = {str(k).lower() for keys in default_shortcuts.values() for k in keys}
    ours = {k.lower() for k in (*SHORTCUTS, *INSTANCE_SHORTCUTS)}
    for name, (key, _, _) in PROJECT_ACTIONS.items():
        assert name in action_manager._actions
        assert [str(k) for k in action_manager._shortcuts[name]] == [key]
        assert key.lower() not in napari_keys and key.lower() not in ours


def test_prelabel_review_in_the_panel_then_export(panel, project_dir, tmp_path):
    """The issue's flow: batch pre-labels, review image after image with one key, export."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    from napari_instseg.cli import main

    viewer, widget = panel
    assert main(["project", "prelabel", str(project_dir), "--backend", "classic"]) == 0
    widget._on_filter()
    _, prompt = viewer.window.add_plugin_dock_widget(PLUGIN, "Prompt", tabify=True)
    prompt.backend_combo.value = "classic"
    keys = []
    for expected in (1, 2):
        _key_on_canvas(viewer, Qt.Key.Key_Period)
        assert widget.current.image_id == expected and widget.current.status == "in progress"
        labels = viewer.layers["project labels"]
        prompt.image_combo.value = widget.image_layer
        prompt.labels_combo.value = labels
        table = layer_table(labels)
        assert set(table["review"]) == {"pre-label"}
        for instance_id in table.index:  # accept every pre-label with the Prompt widget's key
            labels.selected_label = int(instance_id)
            _key_on_canvas(viewer, Qt.Key.Key_Y, Qt.KeyboardModifier.ShiftModifier)
        assert set(layer_table(labels)["review"]) == {"accepted"}
        if expected == 1:  # and a missed object, added with the Prompt widget, lands in the store
            labels.selected_label = 0
            prompt.points_layer.add([[5, 5]])
            added = prompt._on_commit()
            assert added is not None and added.instance_id in layer_table(labels).index
            labels.selected_label = added.instance_id  # a model's mask is a pre-label too: accept it
            _key_on_canvas(viewer, Qt.Key.Key_Y, Qt.KeyboardModifier.ShiftModifier)
        keys.append(prompt.image_key(widget.image_layer))
        QTest.mouseClick(widget.submit_button, Qt.MouseButton.LeftButton)
    assert keys[0] != keys[1]  # the Prompt widget never mistakes one tile for the other
    assert "Nothing left to do for alice" in widget.summary.text()
    # a reviewer goes through the submitted images with the same key
    widget.annotator_edit.setText("carol")
    widget.review_check.setChecked(True)
    _key_on_canvas(viewer, Qt.Key.Key_Period)
    assert widget.current.image_id == 1 and widget.current.status == "submitted"
    QTest.mouseClick(widget.reviewed_button, Qt.MouseButton.LeftButton)
    assert widget.current.image_id == 2
    QTest.mouseClick(widget.reviewed_button, Qt.MouseButton.LeftButton)
    assert "Nothing left to review" in widget.summary.text()
    output = tmp_path / "dataset.json"
    assert main(["project", "export", str(project_dir), "-o", str(output), "--reviewed-only"]) == 0
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(output))
    assert sorted(coco.getImgIds()) == [1, 2] and len(coco.getAnnIds()) > 0
    assert {a["attributes"]["review"] for a in coco.dataset["annotations"]} == {"accepted"}
    assert len(coco.getAnnIds(imgIds=[1])) == len(layer_table_of_store(project_dir, 1))


def layer_table(layer):
    from napari_instseg.core.instances import from_features

    return from_features(layer.features)


def test_create_a_project_from_the_panel(make_napari_viewer, tmp_path, ihc_image, qtbot, monkeypatch):
    import tifffile
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    for k in range(2):
        tifffile.imwrite(tmp_path / f"t{k}.tif", ihc_image[:64, k * 64 : (k + 1) * 64])
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Project")
    QTest.keyClicks(widget.path_edit, str(tmp_path / "new"))
    QTest.keyClicks(widget.images_edit, str(tmp_path / "*.tif"))
    QTest.mouseClick(widget.create_button, Qt.MouseButton.LeftButton)
    assert widget.model.rowCount() == 2 and (tmp_path / "new" / "manifest.sqlite").is_file()
    QTest.mouseClick(widget.create_button, Qt.MouseButton.LeftButton)  # again: refused, nothing changed
    assert "already exists" in widget.summary.text() and widget.model.rowCount() == 2
    monkeypatch.delenv("NAPARI_INSTSEG_NOTHREADS", raising=False)  # the image is read in a worker
    widget._on_next()
    widget._on_next()  # a second press while the first image loads is refused, not queued
    qtbot.waitUntil(lambda: widget.current is not None, timeout=20000)
    assert widget.current.image_id == 1 and widget.labels_layer.data.shape == (64, 64)
    widget.close()


def layer_table_of_store(project_dir, image_id):
    with Project.open(project_dir) as project:
        path = project.store_path(project.manifest.item(image_id))
    with AnnotationStore.open(path, read_only=True) as store:
        return store.table
