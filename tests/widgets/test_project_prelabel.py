"""*Pre-label everything* in the Project panel, driven with real Qt clicks at 1600 x 1000.

A small project of three synthetic blob images, the classic automatic mode (fast, no weights):
progress per image, pre-labels in each image's store, a second run commits nothing, Cancel
after the first image, the selected rows, a held store, sam2 without a checkpoint, a
read-only project.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_instseg.core.project import Project, refs_from_patterns
from napari_instseg.core.store import AnnotationStore

PLUGIN = "napari-instseg"
N_BLOBS = 4


def _blobs(seed: int) -> np.ndarray:
    """A 96 x 96 grey image with four bright disks (radius 10 px) on a dark background."""
    rng = np.random.default_rng(seed)
    image = np.full((96, 96), 20, np.uint8)
    yy, xx = np.mgrid[:96, :96]
    for k in range(N_BLOBS):
        cy, cx = 16 + (k // 2) * 48 + rng.integers(-4, 5), 16 + (k % 2) * 48 + rng.integers(-4, 5)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < 100] = 200
    return image


@pytest.fixture
def project_dir(tmp_path):
    import tifffile

    folder = tmp_path / "tiles"
    folder.mkdir()
    for k in range(3):
        tifffile.imwrite(folder / f"blobs_{k}.tif", _blobs(k))
    Project.create(tmp_path / "proj", refs_from_patterns([str(folder / "*.tif")])).close()
    return tmp_path / "proj"


@pytest.fixture
def panel(make_napari_viewer, project_dir, qtbot, monkeypatch):
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    monkeypatch.setenv("NAPARI_INSTSEG_ANNOTATOR", "alice")
    viewer = make_napari_viewer(show=True)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Project")
    viewer.window._qt_window.resize(1600, 1000)
    QTest.keyClicks(widget.path_edit, str(project_dir))
    QTest.keyClick(widget.path_edit, Qt.Key.Key_Return)
    widget.prelabel_backend.setCurrentIndex(widget.prelabel_backend.findText("classic-auto"))
    yield viewer, widget
    widget.close()


def _click(button) -> None:
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    QTest.mouseClick(button, Qt.MouseButton.LeftButton)


def _run(widget, qtbot) -> None:
    """Click *Pre-label everything* and wait for the run to end."""
    _click(widget.prelabel_button)
    qtbot.waitUntil(lambda: not widget.prelabel_run.running, timeout=30000)


def _stores(project_dir) -> dict[int, object]:
    """Each image's instance table (None when it has no store), read through the core API."""
    tables = {}
    with Project.open(project_dir) as project:
        for image_id in (1, 2, 3):
            item = project.manifest.item(image_id)
            if not project.has_store(item):
                tables[image_id] = None
                continue
            with AnnotationStore.open(project.store_path(item), read_only=True) as store:
                tables[image_id] = store.table.copy()
    return tables


def _statuses(project_dir) -> list[str]:
    with Project.open(project_dir) as project:
        return [project.manifest.item(i).status for i in (1, 2, 3)]


def test_prelabel_everything_then_a_second_run_commits_nothing(panel, project_dir, qtbot):
    from qtpy.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit, QProgressBar, QTableView

    viewer, widget = panel
    assert not widget.prelabel_progress.visible and not widget.prelabel_cancel.enabled
    _click(widget.prelabel_button)
    assert widget.prelabel_progress.visible and widget.prelabel_cancel.enabled  # while it runs
    viewer.window._qt_window.grab().save(str(project_dir / "running.png"))
    qtbot.waitUntil(lambda: not widget.prelabel_run.running, timeout=30000)
    assert [(done, total) for done, total, _ in widget.prelabel_run.reports] == [(1, 3), (2, 3), (3, 3)]
    assert "3 of 3 image(s) pre-labelled (classic-auto)" in widget.summary.text()
    tables = _stores(project_dir)
    for table in tables.values():
        assert len(table) == N_BLOBS
        assert set(table["source"]) == {"classic-auto"} and set(table["review"]) == {"pre-label"}
    statuses = [widget.model.data(widget.model.index(row, 2)) for row in range(3)]
    counts = [widget.model.data(widget.model.index(row, 5)) for row in range(3)]
    assert statuses == ["pre-labelled"] * 3 and counts == [str(N_BLOBS)] * 3  # the table refreshed
    assert not widget.prelabel_progress.visible and widget.prelabel_button.isEnabled()
    _run(widget, qtbot)  # again: everything is done, nothing is committed twice
    assert "0 of 0 image(s) pre-labelled" in widget.summary.text()
    for image_id, table in _stores(project_dir).items():
        assert table.equals(tables[image_id])
    kinds = (QAbstractButton, QComboBox, QLineEdit, QAbstractSpinBox, QTableView, QProgressBar)
    untipped = [type(w).__name__ for kind in kinds for w in widget.findChildren(kind) if not w.toolTip()]
    assert not untipped, untipped


def test_cancel_after_the_first_image_then_resume(panel, project_dir, qtbot, monkeypatch):
    import napari_instseg.core.project._batch as batch

    _viewer, widget = panel
    real, calls, release = batch.segment_image, [], threading.Event()

    def segment(path, config, shape_yx=None):  # the second image waits until Cancel was pressed
        calls.append(path)
        if len(calls) == 2:
            release.wait(20)
        return real(path, config, shape_yx)

    monkeypatch.setattr(batch, "segment_image", segment)
    _click(widget.prelabel_button)
    qtbot.waitUntil(lambda: any(done == 1 for done, _, _ in widget.prelabel_run.reports), timeout=30000)
    assert widget.prelabel_progress.native.value() == 1
    _click(widget.prelabel_cancel.native)
    release.set()
    qtbot.waitUntil(lambda: not widget.prelabel_run.running, timeout=30000)
    assert "cancelled after 2 of 3" in widget.summary.text()  # the image being saved is finished
    assert _statuses(project_dir) == ["pre-labelled", "pre-labelled", "todo"]
    tables = _stores(project_dir)
    assert tables[3] is None  # untouched: not even a store
    _run(widget, qtbot)  # resumes: only image 3
    assert "1 of 1 image(s) pre-labelled" in widget.summary.text()
    assert _statuses(project_dir) == ["pre-labelled"] * 3
    after = _stores(project_dir)
    assert after[1].equals(tables[1]) and after[2].equals(tables[2]) and len(after[3]) == N_BLOBS


def test_cancel_the_selected_rows_after_the_first_image(panel, project_dir, qtbot, monkeypatch):
    import napari_instseg.core.project._batch as batch

    _viewer, widget = panel
    real, calls, release = batch.segment_image, [], threading.Event()

    def segment(path, config, shape_yx=None):
        calls.append(path)
        if len(calls) == 2:
            release.wait(20)
        return real(path, config, shape_yx)

    monkeypatch.setattr(batch, "segment_image", segment)
    widget.prelabel_target.setCurrentText("selected rows")
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    widget.table.setFocus()
    QTest.keyClick(widget.table, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)  # select every row
    assert len(widget._selected_keys()) == 3
    _click(widget.prelabel_button)
    qtbot.waitUntil(lambda: any(done == 1 for done, _, _ in widget.prelabel_run.reports), timeout=30000)
    _click(widget.prelabel_cancel.native)
    release.set()
    qtbot.waitUntil(lambda: not widget.prelabel_run.running, timeout=30000)
    assert "cancelled after 1 of 3" in widget.summary.text()  # the image being segmented is not saved
    assert _statuses(project_dir) == ["pre-labelled", "todo", "todo"]
    assert _stores(project_dir)[2] is None and _stores(project_dir)[3] is None


def test_selected_rows_a_held_store_sam2_without_checkpoint_and_a_read_only_project(
    panel, project_dir, qtbot, monkeypatch, tmp_path
):
    import os

    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    _viewer, widget = panel
    monkeypatch.setenv("NAPARI_INSTSEG_NOTHREADS", "1")
    widget.prelabel_target.setCurrentText("selected rows")
    view = widget.table
    for row, modifier in ((0, Qt.KeyboardModifier.NoModifier), (2, Qt.KeyboardModifier.ControlModifier)):
        centre = view.visualRect(widget.model.index(row, 1)).center()
        QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, modifier, centre)
    assert widget._selected_keys() == [(1, ""), (3, "")]
    with Project.open(project_dir) as project:
        held = project.open_store(project.manifest.item(3))  # another session holds image 3
    try:
        _run(widget, qtbot)
    finally:
        held.close()
    text = widget.summary.text()
    assert "1 of 2 selected image(s) pre-labelled (classic-auto)" in text and "being written by process" in text
    assert _statuses(project_dir) == ["pre-labelled", "todo", "todo"]
    assert len(_stores(project_dir)[1]) == N_BLOBS and len(_stores(project_dir)[3]) == 0
    _run(widget, qtbot)  # again: image 1 is done, image 3 is free now
    assert "image 1 is 'pre-labelled'" in widget.summary.text()
    assert _statuses(project_dir) == ["pre-labelled", "todo", "pre-labelled"]

    monkeypatch.setenv("NAPARI_INSTSEG_CACHE", str(tmp_path / "no-weights"))
    monkeypatch.delenv("NAPARI_INSTSEG_SAM2_CHECKPOINT", raising=False)
    widget.prelabel_backend.setCurrentIndex(widget.prelabel_backend.findText("sam2-auto"))
    before = _stores(project_dir)
    _run(widget, qtbot)
    assert "sam2-auto needs" in widget.summary.text() and "classic-auto" in widget.summary.text()

    widget.prelabel_backend.setCurrentIndex(widget.prelabel_backend.findText("classic-auto"))
    widget.prelabel_target.setCurrentText("all not started")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: "manifest" not in str(path) and real_access(path, mode))
    _run(widget, qtbot)
    assert "is read-only here" in widget.summary.text()
    monkeypatch.setattr(os, "access", real_access)
    assert _statuses(project_dir) == ["pre-labelled", "todo", "pre-labelled"]  # nothing changed
    after = _stores(project_dir)
    assert after[2] is None and all(after[i].equals(before[i]) for i in (1, 3))

    from napari_instseg.core.prompting.sam2 import sam2_available

    if sam2_available():  # with a checkpoint, sam2-auto runs the project's SAM 2 automatic mode
        checkpoint = tmp_path / "sam2.1_hiera_tiny.pt"
        checkpoint.write_bytes(b"")
        monkeypatch.setenv("NAPARI_INSTSEG_SAM2_CHECKPOINT", str(checkpoint))
        widget.prelabel_backend.setCurrentIndex(widget.prelabel_backend.findText("sam2-auto"))
        config = widget._prelabel_config()
        assert (config.backend, config.auto, config.checkpoint) == ("sam2", "cells", str(checkpoint))
        assert config.source_name == "sam2-auto"
