"""Keeping the panels narrow: wrapped text, compact combos, collapsible advanced sections.

A dock panel's minimum width is the widest unbreakable thing in it (a long label, a combo
sized to its longest item): these helpers remove those, so every panel works at 420 px or
less and the canvas keeps most of the window.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "PANEL_MAX_MIN_HEIGHT",
    "PANEL_MAX_MIN_WIDTH",
    "DockedScrolls",
    "collapsible",
    "compact",
    "scrolled",
    "tooltips",
]

PANEL_MAX_MIN_WIDTH = 420
"""No panel needs more than this many pixels of width."""

PANEL_MAX_MIN_HEIGHT = 200
"""No panel needs more than this many pixels of height: a taller one scrolls, so three panels
docked one above the other fit a 1000-pixel-high window."""


class DockedScrolls:
    """Mixin for a scrollable magicgui ``Container``: napari docks its scroll area.

    napari docks a magicgui widget's ``native`` (``combine_widgets``), which for a scrollable
    container is the inner widget, taken out of its scroll area: the dock then needs the whole
    panel's height, and panels docked one above the other grow the window past the screen.
    Here ``native`` is the scroll area (magicgui's ``root_native_widget``); :attr:`inner` is
    the widget holding the layout.
    """

    @property
    def native(self) -> Any:
        """The scroll area: what napari docks and what a tab shows."""
        return self.root_native_widget  # type: ignore[attr-defined]

    @property
    def inner(self) -> Any:
        """The widget inside the scroll area, holding the panel's layout."""
        return self._widget._mgui_get_native_widget()  # type: ignore[attr-defined]


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
            fit_width(outer)
            break
        outer = outer.parentWidget()


def fit_width(area: Any) -> None:
    """A vertical scroll area exactly as wide as its content needs (never cut at the right
    edge: there is no horizontal scroll bar), and at most :data:`PANEL_MAX_MIN_HEIGHT` high."""
    content = area.widget()
    if content is None:
        return
    bar = area.verticalScrollBar().sizeHint().width()
    area.setMinimumWidth(content.minimumSizeHint().width() + bar + 2 * area.frameWidth())
    area.setMinimumHeight(min(PANEL_MAX_MIN_HEIGHT, content.minimumSizeHint().height()))


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
    fit_width(area)
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
