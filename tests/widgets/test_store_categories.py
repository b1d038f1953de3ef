"""A category added in the GUI while a store is attached is saved into that store: it is there
after reopening, instances committed with it keep it, and the COCO export lists it."""

from __future__ import annotations

import json

import numpy as np
from _canvas import click, key, show_at_size
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest

from napari_instseg.cli import main
from napari_instseg.core.store import AnnotationStore

PLUGIN = "napari-instseg"


def _reveal(widget, qtbot):
    """Bring the widget's tab to the front and open its folded section, as a person does."""
    from qtpy.QtWidgets import QDockWidget
    from superqt import QCollapsible

    parent = widget.native.parentWidget()
    while parent is not None:
        if isinstance(parent, QCollapsible) and not parent.isExpanded():
            QTest.mouseClick(parent._toggle_btn, Qt.MouseButton.LeftButton)
        if isinstance(parent, QDockWidget):
            parent.raise_()
        parent = parent.parentWidget()
    qtbot.waitUntil(lambda: widget.native.isVisible() and widget.native.height() > 10, timeout=3000)


def _type(widget, text, qtbot):
    """Type into a line edit as a person does (click into it, then the keys)."""
    _reveal(widget, qtbot)
    QTest.mouseClick(widget.native, Qt.MouseButton.LeftButton)
    widget.native.clear()
    QTest.keyClicks(widget.native, text)


def test_a_category_added_in_the_gui_is_saved_in_the_existing_store(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_INSTSEG_NOTHREADS", "1")
    monkeypatch.setenv("NAPARI_INSTSEG_CONFIG", str(tmp_path / "config"))
    viewer = make_napari_viewer()
    image = np.full((128, 128), 20, np.uint8)
    yy, xx = np.mgrid[:128, :128]
    image[(yy - 90) ** 2 + (xx - 90) ** 2 <= 100] = 200
    viewer.add_image(image, name="cells")
    _, prompt = viewer.window.add_plugin_dock_widget(PLUGIN, "Prompt")
    _, instances = viewer.window.add_plugin_dock_widget(PLUGIN, "Instances", tabify=True)
    prompt.backend_combo.value = "classic"
    prompt._on_new_labels()
    store = tmp_path / "cells.zarr"
    prompt.store_edit.value = str(store)
    prompt._on_store()  # the store exists before the category does
    instances.labels_combo.value = prompt.labels_combo.value
    show_at_size(viewer, qtbot)
    viewer.reset_view()

    _type(instances.new_category_edit, "mitosis", qtbot)
    _type(instances.new_color_edit, "#ff00ff", qtbot)
    _reveal(instances.buttons["add_category"], qtbot)
    QTest.mouseClick(instances.buttons["add_category"].native, Qt.MouseButton.LeftButton)
    assert "Saved with the store" in instances.status.value
    prompt.category_combo.value = 2
    click(viewer, qtbot, (90, 90))
    key(viewer, qtbot, "C", "Shift")
    assert prompt.labels_combo.value.data[90, 90] == 1
    prompt._binding.close()
    viewer.close()

    with AnnotationStore.open(store, read_only=True) as again:
        assert again.protocol.category(2).name == "mitosis" and again.protocol.category(2).color == "#ff00ff"
        assert again.table.loc[1, "category_id"] == 2
    out = tmp_path / "cells.json"
    assert main(["export", str(store), "-o", str(out)]) == 0
    coco = json.loads(out.read_text())
    assert {c["id"]: c["name"] for c in coco["categories"]}[2] == "mitosis"
    assert [a["category_id"] for a in coco["annotations"]] == [2]
