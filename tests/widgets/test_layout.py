"""Layout at a real window size: narrow panels, a canvas that keeps most of the window."""

import numpy as np
import pytest
from _canvas import WINDOW_WH, canvas, show_at_size

PLUGIN = "napari-instseg"
PANELS = ("Prompt", "Instances", "Review pre-labels", "QA and review", "Slide")


@pytest.fixture
def viewer(make_napari_viewer, monkeypatch):
    monkeypatch.setenv("NAPARI_INSTSEG_NOTHREADS", "1")
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((256, 256), np.uint8), name="cells")
    viewer.add_labels(np.zeros((256, 256), np.uint32), name="cells instances")
    return viewer


def _canvas_share(viewer, qtbot):
    show_at_size(viewer, qtbot)
    window = viewer.window._qt_window
    assert (window.width(), window.height()) == WINDOW_WH
    return canvas(viewer).width() / WINDOW_WH[0]


def test_every_panel_opened_keeps_the_window_and_most_of_it_for_the_canvas(viewer, qtbot):
    widgets = {}
    for name in PANELS:
        dock, widgets[name] = viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=True)
        assert dock.minimumSizeHint().width() <= 420, f"{name} needs {dock.minimumSizeHint().width()} px"
    share = _canvas_share(viewer, qtbot)
    print(f"canvas with every panel open (tabified): {canvas(viewer).width()} px = {share:.0%}")
    assert share >= 0.55


def test_one_tabbed_panel_and_ten_table_rows(viewer, qtbot):
    dock, panel = viewer.window.add_plugin_dock_widget(PLUGIN, "Instance Segmentation")
    assert dock.minimumSizeHint().width() <= 420
    share = _canvas_share(viewer, qtbot)
    print(f"canvas with the tabbed panel: {canvas(viewer).width()} px = {share:.0%}")
    assert share >= 0.55
    panel.setCurrentWidget(panel.instances)
    qtbot.wait(50)
    table = panel.instances.table
    rows_visible = table.viewport().height() // table.verticalHeader().defaultSectionSize()
    assert rows_visible >= 10, f"{rows_visible} rows"
    assert panel.prompt.image_combo.value is viewer.layers["cells"]  # preselected
    assert panel.prompt.labels_combo.value is viewer.layers["cells instances"]


def test_every_control_has_a_tooltip(viewer):
    from qtpy.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit, QTableWidget

    _, panel = viewer.window.add_plugin_dock_widget(PLUGIN, "Instance Segmentation")
    kinds = (QAbstractButton, QComboBox, QLineEdit, QAbstractSpinBox, QTableWidget)
    controls = [w for kind in kinds for w in panel.findChildren(kind)]
    assert len(controls) > 59

    def tip(widget):
        for _ in range(3):  # the control, or the composite field it belongs to
            if widget is None:
                return ""
            if widget.toolTip():
                return widget.toolTip()
            widget = widget.parentWidget()
        return ""

    missing = [f"{type(w).__name__} {getattr(w, 'text', lambda: '')()!r}" for w in controls if not tip(w)]
    assert not missing, missing


def test_the_demo_window_shows_the_canvas(make_napari_viewer, qtbot, monkeypatch):
    from napari_instseg.core.session import AnnotationSession
    from napari_instseg.demo import show_demo

    monkeypatch.setenv("NAPARI_INSTSEG_NOTHREADS", "1")
    viewer = make_napari_viewer()
    labels = np.zeros((512, 512), np.uint32)
    labels[100:120, 100:120] = 1
    panel = show_demo(viewer, np.zeros((512, 512, 3), np.uint8), AnnotationSession(labels))
    share = _canvas_share(viewer, qtbot)
    assert share >= 0.55 and canvas(viewer).height() >= 600
    assert panel.prompt.labels_combo.value is viewer.layers["IHC tile instances"]
