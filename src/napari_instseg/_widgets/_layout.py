"""Keeping the panels narrow: wrapped text, compact combos, collapsible advanced sections.

A dock panel's minimum width is the widest unbreakable thing in it (a long label, a combo
sized to its longest item): these helpers remove those, so every panel works at 420 px or
less and the canvas keeps most of the window.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PANEL_MAX_MIN_WIDTH", "collapsible", "compact", "scrolled", "tooltips"]

PANEL_MAX_MIN_WIDTH = 420
"""No panel needs more than this many pixels of width."""


def compact(root: Any) -> None:
    """Wrap every label and let every combo / line edit shrink below its longest item."""
    from qtpy.QtWidgets import QComboBox, QLabel, QLineEdit, QScrollArea, QSizePolicy

    for label in root.findChildren(QLabel):
        label.setWordWrap(True)
        label.setMinimumWidth(0)
        if label.text() and len(label.text()) > 30:  # long text: take the width given, wrap
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    for combo in root.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(8)
        combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
    for edit in root.findChildren(QLineEdit):
        edit.setMinimumWidth(60)
    outer = root.parentWidget()
    while outer is not None:  # magicgui sized its scroll area before the labels wrapped
        if isinstance(outer, QScrollArea):
            outer.setMinimumWidth(0)
            break
        outer = outer.parentWidget()


def collapsible(title: str, widgets: list[Any], *, tooltip: str = "") -> Any:
    """A collapsed superqt ``QCollapsible`` section holding magicgui widgets (label + field rows)."""
    from magicgui.widgets import Container
    from superqt import QCollapsible

    section = QCollapsible(title)
    inner = Container(widgets=widgets, labels=True)
    inner.native.setContentsMargins(0, 0, 0, 0)
    section.addWidget(inner.native)
    section.setToolTip(tooltip or f"Show or hide: {title}")
    setattr(section, "_inner", inner)  # noqa: B010 - keep the magicgui container alive with its section
    compact(inner.native)
    return section


def scrolled(widget: Any) -> Any:
    """``widget`` inside a vertical scroll area, so a tall panel never grows the window."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QFrame, QScrollArea

    area = QScrollArea()
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    return area


def tooltips(tips: dict[Any, str]) -> None:
    """Give each magicgui widget (or Qt widget) its tooltip; a whole magicgui widget's parts
    (a file field's line edit and button) get it too."""
    from qtpy.QtWidgets import QWidget

    for widget, tip in tips.items():
        native = getattr(widget, "native", widget)
        native.setToolTip(tip)
        for child in native.findChildren(QWidget):
            if not child.toolTip():
                child.setToolTip(tip)
