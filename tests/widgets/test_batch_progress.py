"""Batch work in the QA and Slide panels runs in a napari thread worker with a progress bar
that advances per step / per tile, and Cancel stops it leaving outputs as they were (QA) or
consistently partial and resumable (a slide's store)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zarr
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest

from napari_instseg._adapters import labels_layer_kwargs
from napari_instseg.core.instances import make_rows
from napari_instseg.core.protocol import AnnotationProtocol
from napari_instseg.core.store import AnnotationStore

PLUGIN = "napari-instseg"
TILE = 128


def _press(button):
    QTest.mouseClick(button.native, Qt.MouseButton.LeftButton)


def _watch(bar):
    """(value, max, visible) of the panel's bar at every change."""
    seen: list[tuple[int, int, bool]] = []
    bar.changed.connect(lambda value: seen.append((int(value), int(bar.max), bar.visible)))
    return seen


def _slowly(monkeypatch, module, name, seconds):
    original = getattr(module, name)

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, slow)


# -- QA ------------------------------------------------------------------------------------------
def _labels(shift=0):
    labels = np.zeros((128, 128), np.uint32)
    for k in range(16):
        y, x = 8 + 30 * (k // 4), 8 + 30 * (k % 4)
        labels[y : y + 14, x + shift : x + 14 + shift] = k + 1
    return labels


@pytest.fixture
def qa_panel(make_napari_viewer, tmp_path, qtbot):
    from _canvas import show_at_size

    viewer = make_napari_viewer()
    table = make_rows(range(1, 17), occlusion=(["none", "partial", "heavy", "none"] * 4))
    protocol = AnnotationProtocol.default()
    viewer.add_labels(_labels(), **labels_layer_kwargs("reference", table, protocol, {"file_name": "tile.tif"}))
    viewer.add_labels(_labels(shift=3), **labels_layer_kwargs("candidate", table, protocol))
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "QA and review")
    widget.reference_combo.value = viewer.layers["reference"]
    widget.candidate_combo.value = viewer.layers["candidate"]
    widget.outdir_edit.value = str(tmp_path / "qa")
    show_at_size(viewer, qtbot)
    return widget, tmp_path / "qa"


def test_qa_shows_a_progress_bar_that_advances_per_step(qa_panel, qtbot):
    widget, out = qa_panel
    assert not widget.progress.visible
    seen = _watch(widget.progress)
    _press(widget.run_button)
    assert widget.qa_run.running and widget.qa_run.worker is not None  # a napari thread worker
    qtbot.waitUntil(lambda: widget.report is not None, timeout=60_000)
    assert [done for done, _, _ in widget.qa_run.reports] == [0, 1, 2, 3, 4, 5, 6]
    assert [value for value, _, _ in seen][-1] == 6 and all(maximum == 6 for _, maximum, _ in seen[1:])
    assert all(visible for _, _, visible in seen)  # shown while it ran
    assert not widget.progress.visible and not widget.cancel_button.enabled  # and put away after
    assert (out / "report.json").is_file()


def test_cancelling_qa_keeps_nothing_and_the_panel_stays_usable(qa_panel, qtbot, monkeypatch):
    import napari_instseg.core.qa.report as report

    widget, out = qa_panel
    _slowly(monkeypatch, report, "scores_of", 0.4)  # Mask AP per tier takes a while
    _press(widget.run_button)
    qtbot.waitUntil(lambda: len(widget.qa_run.reports) >= 2, timeout=30_000)  # the UI got the reports
    assert widget.cancel_button.enabled
    _press(widget.cancel_button)
    qtbot.waitUntil(lambda: not widget.qa_run.running, timeout=30_000)
    assert "QA cancelled" in widget.status.value and "nothing kept" in widget.status.value
    assert not out.exists() and widget.report is None
    monkeypatch.undo()
    _press(widget.run_button)  # a second run works
    qtbot.waitUntil(lambda: widget.report is not None, timeout=60_000)
    assert (out / "review_queue.json").is_file()


# -- Slide ---------------------------------------------------------------------------------------
def _make_slide(path, tiles=2):
    from skimage import data

    ihc = data.immunohistochemistry()[:TILE, :TILE]
    side = TILE * (tiles + 1)
    image = np.full((side, side, 3), 235, np.uint8)
    image[: TILE * tiles, : TILE * tiles] = np.tile(ihc, (tiles, tiles, 1))
    root = zarr.open_group(str(path), mode="w")
    root.create_array("0", data=image, chunks=(TILE, TILE, 3))
    root.create_array("1", data=image[::4, ::4], chunks=(TILE, TILE, 3))
    return path


@pytest.fixture
def slide_panel(make_napari_viewer, tmp_path, qtbot):
    from _canvas import show_at_size

    viewer = make_napari_viewer()
    viewer.open(str(_make_slide(tmp_path / "ihc.zarr")), plugin=PLUGIN)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Slide")
    assert widget.slide_combo.value is viewer.layers["ihc"]
    widget.backend_combo.value = "classic"
    widget.mode_combo.value = "detected nuclei"
    widget.tile_spin.value, widget.halo_spin.value = TILE, 16
    widget.store_edit.value = str(tmp_path / "ihc-labels.zarr")
    widget._on_open_store()
    show_at_size(viewer, qtbot)
    return viewer, widget, tmp_path / "ihc-labels.zarr"


def test_slide_prelabel_runs_in_a_worker_with_a_bar_per_tile(slide_panel, qtbot):
    viewer, widget, store_path = slide_panel
    seen = _watch(widget.progress)
    assert widget.progress.visible is False
    _press(widget.prelabel_button)
    assert widget.batch.running and widget.batch.worker is not None
    assert not widget.prelabel_button.enabled and not widget.open_button.enabled  # the store is the batch's
    qtbot.waitUntil(lambda: not widget.batch.running, timeout=120_000)
    done = [d for d, _, _ in widget.batch.reports]
    total = widget.batch.reports[-1][1]
    assert total >= 4 and done == list(range(1, total + 1))  # after every tile
    assert all(visible for _, _, visible in seen) and not widget.progress.visible
    assert "pre-labels committed" in widget.status.value
    assert widget.store is not None and widget.store.n_instances > 20
    assert "slide window" in viewer.layers and widget.open_button.enabled  # back to annotating
    with AnnotationStore.open(store_path, read_only=True) as saved:
        assert saved.count_instances("review").get("pre-label", 0) == widget.store.n_instances


def test_cancelling_a_slide_prelabel_keeps_the_tiles_done_and_a_rerun_resumes(slide_panel, qtbot, monkeypatch):
    import napari_instseg.core.batch as batch

    _, widget, store_path = slide_panel
    _slowly(monkeypatch, batch, "_commit_tile", 0.5)
    _press(widget.prelabel_button)
    qtbot.waitUntil(lambda: len(widget.batch.reports) >= 1, timeout=60_000)  # a tile is done
    _press(widget.cancel_button)
    qtbot.waitUntil(lambda: not widget.batch.running, timeout=60_000)
    assert "cancelled after" in widget.status.value and "run again to resume" in widget.status.value
    done_before = int(widget.status.value.split("cancelled after ")[1].split(" of ")[0])
    total = widget.batch.reports[-1][1]
    assert 1 <= done_before < total
    assert widget.store is not None and not widget.store.read_only  # the panel has its store back
    with AnnotationStore.open(store_path, read_only=True) as saved:
        assert saved.n_instances == widget.store.n_instances > 0  # the finished tiles' pre-labels
    monkeypatch.undo()
    _press(widget.prelabel_button)
    qtbot.waitUntil(lambda: not widget.batch.running, timeout=120_000)
    assert f"{done_before} tiles already done" in widget.status.value
