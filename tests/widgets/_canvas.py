"""Drive a napari viewer as a person does: real Qt mouse and key events on the canvas.

The window is sized 1600 x 1000; data (y, x) positions are mapped to canvas pixels with the
vispy view transform, and events go to the canvas widget with ``QTest``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

WINDOW_WH = (1600, 1000)


def show_at_size(viewer: Any, qtbot: Any) -> None:
    """Show the viewer window at 1600 x 1000 and let it lay out."""
    window = viewer.window._qt_window
    window.show()
    window.resize(*WINDOW_WH)
    qtbot.waitExposed(window)
    qtbot.wait(50)


def canvas(viewer: Any) -> Any:
    """The Qt widget of the napari canvas."""
    return viewer.window._qt_viewer.canvas.native


def to_canvas(viewer: Any, world_yx: tuple[float, float]) -> Any:
    """Canvas pixel (QPoint) of a world (y, x) position."""
    from qtpy.QtCore import QPoint

    vispy = viewer.window._qt_viewer.canvas
    transform = vispy.view.transform * vispy.view.scene.transform
    x, y = transform.map([world_yx[1], world_yx[0], 0, 1])[:2]
    ratio = canvas(viewer).devicePixelRatioF() or 1.0
    return QPoint(round(float(x / ratio)), round(float(y / ratio)))


def _modifier(names: tuple[str, ...]) -> Any:
    from qtpy.QtCore import Qt

    flags = Qt.KeyboardModifier.NoModifier
    table = {
        "Shift": Qt.KeyboardModifier.ShiftModifier,
        "Control": Qt.KeyboardModifier.ControlModifier,
        "Alt": Qt.KeyboardModifier.AltModifier,
    }
    for name in names:
        flags |= table[name]
    return flags


def click(viewer: Any, qtbot: Any, world_yx: tuple[float, float], *modifiers: str) -> None:
    """Press and release the left button at a world position (holding ``modifiers``)."""
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    widget = canvas(viewer)
    point = to_canvas(viewer, world_yx)
    QTest.mouseMove(widget, point)
    QTest.mousePress(widget, Qt.MouseButton.LeftButton, _modifier(modifiers), point)
    QTest.mouseRelease(widget, Qt.MouseButton.LeftButton, _modifier(modifiers), point)
    qtbot.wait(10)


def drag(viewer: Any, qtbot: Any, start_yx: tuple[float, float], end_yx: tuple[float, float]) -> None:
    """Press at ``start_yx``, move in steps to ``end_yx`` with the button held, release."""
    from qtpy.QtCore import QPoint, Qt
    from qtpy.QtGui import QMouseEvent
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QApplication

    widget = canvas(viewer)
    a, b = to_canvas(viewer, start_yx), to_canvas(viewer, end_yx)
    QTest.mouseMove(widget, a)
    QTest.mousePress(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
    for t in np.linspace(0.1, 1.0, 8):
        p = QPoint(int(a.x() + t * (b.x() - a.x())), int(a.y() + t * (b.y() - a.y())))
        event = QMouseEvent(
            QMouseEvent.Type.MouseMove,
            p.toPointF() if hasattr(p, "toPointF") else p,
            widget.mapToGlobal(p).toPointF() if hasattr(p, "toPointF") else widget.mapToGlobal(p),
            Qt.MouseButton.NoButton,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
        )
        QApplication.sendEvent(widget, event)
        qtbot.wait(15)  # vispy drops move events less than 10 ms apart
    QTest.mouseRelease(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)
    qtbot.wait(10)


def key(viewer: Any, qtbot: Any, name: str, *modifiers: str) -> None:
    """Press a key on the focused canvas (``name`` as Qt spells it: ``"C"``, ``"Right"``)."""
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    widget = canvas(viewer)
    widget.setFocus()
    code = getattr(Qt.Key, f"Key_{name}")
    QTest.keyClick(widget, code, _modifier(modifiers))
    qtbot.wait(10)


def napari_bindings(viewer: Any) -> set[str]:
    """Every key napari itself binds: action manager, app-model keybindings, layer keymaps and
    the menu bar's Alt mnemonics, normalised as ``"Shift+C"``."""
    from napari import layers
    from napari._app_model import get_app_model
    from napari.utils.action_manager import action_manager

    ours = {name for name in action_manager._actions if name.startswith("napari-instseg:")}
    keys = {normalise(str(k)) for name, ks in action_manager._shortcuts.items() if name not in ours for k in ks}
    keys |= {normalise(str(kb.keybinding)) for kb in get_app_model().keybindings}
    for cls in (layers.Image, layers.Labels, layers.Points, layers.Shapes):
        keys |= {normalise(str(k)) for k in cls.class_keymap}
    for action in viewer.window._qt_window.menuBar().actions():
        text = action.text()
        if "&" in text:
            keys.add(normalise(f"Alt+{text[text.index('&') + 1].upper()}"))
    return keys


def normalise(key: str) -> str:
    """One spelling for a key combination: modifiers sorted, joined with '+'."""
    parts = key.split("+") if key != "+" else [key]
    mods = sorted(parts[:-1])
    return "+".join([*mods, parts[-1].upper() if len(parts[-1]) == 1 else parts[-1]])
