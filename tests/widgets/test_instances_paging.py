"""The Instances panel on a layer with 200,000 instances: one page of rows at a time."""

import time

import numpy as np
from _canvas import show_at_size
from qtpy.QtCore import Qt

from napari_instseg._widgets.instances import PAGE_ROWS
from napari_instseg.core.instances import make_rows, to_features

PLUGIN = "napari-instseg"
N = 200_000


def _big_layer(viewer):
    """A 400 x 500 labels layer whose every pixel is its own instance (ids 1..200,000)."""
    ids = np.arange(1, N + 1, dtype=np.int64)
    review = np.where(ids % 4 == 0, "accepted", "pre-label")
    occlusion = np.where(ids % 10 == 0, "partial", "none")
    table = make_rows(ids, review=review.tolist(), occlusion=occlusion.tolist(), source="import")
    return viewer.add_labels(ids.reshape(400, 500), name="slide", features=to_features(table))


def test_a_200k_row_table_shows_one_page_and_pages_with_a_click(make_napari_viewer, qtbot, monkeypatch):
    monkeypatch.setenv("NAPARI_INSTSEG_NOTHREADS", "1")
    viewer = make_napari_viewer()
    layer = _big_layer(viewer)
    _, instances = viewer.window.add_plugin_dock_widget(PLUGIN, "Instances")
    instances.labels_combo.value = layer
    show_at_size(viewer, qtbot)

    started = time.perf_counter()
    instances.refresh()
    refresh_s = time.perf_counter() - started
    print(f"refresh of the Instances panel on {N:,} rows: {refresh_s * 1000:.0f} ms")
    assert instances.table.rowCount() == PAGE_ROWS
    assert instances.row_ids() == list(range(1, PAGE_ROWS + 1))
    text = instances.page_label.value
    assert f"rows 1\u2013{PAGE_ROWS} of {N:,}" in text
    assert "accepted 50,000" in text and "pre-label 150,000" in text and "partial 20,000" in text
    assert not instances.buttons["prev_page"].enabled

    qtbot.mouseClick(instances.buttons["next_page"].native, Qt.MouseButton.LeftButton)
    assert instances.row_ids() == list(range(PAGE_ROWS + 1, 2 * PAGE_ROWS + 1))
    assert f"rows {PAGE_ROWS + 1}\u2013{2 * PAGE_ROWS} of {N:,}" in instances.page_label.value
    qtbot.mouseClick(instances.buttons["prev_page"].native, Qt.MouseButton.LeftButton)
    assert instances.row_ids()[0] == 1

    # a filter goes back to its first page; selecting a far instance turns to its page
    instances.tier_filter.value = "partial"
    assert instances.row_ids()[:3] == [10, 20, 30]
    assert f"of {N // 10:,}" in instances.page_label.value
    instances.select(150_000)
    assert instances.selected_id() == 150_000
    assert layer.selected_label == 150_000
    assert instances.table.rowCount() <= PAGE_ROWS


def test_counts_come_from_the_store_when_the_layer_has_one(make_napari_viewer, tmp_path, monkeypatch):
    from napari_instseg._widgets._binding import layer_session

    monkeypatch.setenv("NAPARI_INSTSEG_NOTHREADS", "1")
    viewer = make_napari_viewer()
    ids = np.arange(1, 13, dtype=np.int64)
    table = make_rows(ids, review=["accepted" if i % 3 == 0 else "pre-label" for i in ids], source="import")
    layer = viewer.add_labels(ids.reshape(3, 4), name="small", features=to_features(table))
    _, instances = viewer.window.add_plugin_dock_widget(PLUGIN, "Instances")
    instances.labels_combo.value = layer
    binding = layer_session(layer)
    binding.attach_store(tmp_path / "small.zarr")
    calls = []
    original = binding.store.count_instances
    monkeypatch.setattr(binding.store, "count_instances", lambda by: calls.append(by) or original(by))
    instances.refresh()
    assert calls == ["occlusion", "review"]
    assert "accepted 4" in instances.page_label.value and "pre-label 8" in instances.page_label.value
    assert instances.table.rowCount() == 12
    binding.close()
