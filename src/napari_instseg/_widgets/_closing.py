"""Paint is never lost when napari closes: pending strokes are recorded on the way out.

A paint stroke on a bound layer is recorded (and saved to its store) by a one-second timer
(:data:`~napari_instseg._widgets._binding.PAINT_SAVE_DELAY_MS`). Closing the viewer, removing
the layer or quitting within that second would drop it, so :func:`flush_on_close` records
pending paint when a layer leaves the viewer (and then closes its binding, releasing the
store's lock), when the viewer's window closes, and when the application quits;
:func:`flush_layer` / :func:`flush_bound_data` record it before an export or QA reads the
layer.
"""

from __future__ import annotations

import weakref
from typing import Any

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QApplication

from napari_instseg._widgets._binding import bound_layers, unbind

__all__ = ["flush_bound_data", "flush_layer", "flush_on_close"]

_WATCHED: weakref.WeakSet[Any] = weakref.WeakSet()
_QUIT_HOOKED: list[Any] = []


def flush_layer(layer: Any) -> None:
    """Record the pending paint of ``layer`` now if it is bound (an unbound layer has none)."""
    for bound_layer, bound in bound_layers():
        if bound_layer is layer:
            bound.flush()


def flush_bound_data(data: Any) -> Any:
    """Record the pending paint of the bound layer whose array is ``data`` (what napari hands
    a writer) and return that layer's features as they are then; None when no bound layer
    shows ``data``."""
    for layer, bound in bound_layers():
        if layer.data is data:
            bound.flush()
            return layer.features
    return None


def flush_on_close(layer: Any) -> None:
    """Record the pending paint of bound layers when ``layer``'s viewer closes: when a layer
    leaves that viewer (its binding is then closed: the paint is saved and the store's lock
    released), when the viewer's window closes, and when the application quits. Each viewer
    is watched once."""
    app = QApplication.instance()
    if app is not None and app not in _QUIT_HOOKED:
        app.aboutToQuit.connect(_flush_all)
        _QUIT_HOOKED.append(app)
    for viewer in _viewers_holding(layer):
        if viewer in _WATCHED:
            continue
        _WATCHED.add(viewer)
        viewer.layers.events.removed.connect(_on_layer_removed)
        window = getattr(getattr(viewer, "window", None), "_qt_window", None)
        if window is not None:
            window.installEventFilter(_CloseFilter(window, viewer))


def _viewers_holding(layer: Any) -> list[Any]:
    """The open viewers showing ``layer`` (the current one first)."""
    import napari

    viewers = [napari.current_viewer(), *list(getattr(napari.Viewer, "_instances", ()))]
    found: list[Any] = []
    for viewer in viewers:
        if viewer is not None and viewer not in found and layer in viewer.layers:
            found.append(viewer)
    return found


def _on_layer_removed(event: Any) -> None:
    bound = unbind(event.value)
    if bound is not None:
        bound.close()


def _flush_all() -> None:
    for _, bound in bound_layers():
        bound.flush()


class _CloseFilter(QObject):
    """Records the pending paint of a viewer's bound layers when its window closes (before
    napari tears the window down; the close may still be cancelled, so nothing is closed)."""

    def __init__(self, parent: Any, viewer: Any) -> None:
        super().__init__(parent)
        self._viewer = weakref.ref(viewer)

    def eventFilter(self, watched: Any, event: Any) -> bool:
        viewer = self._viewer()
        if event.type() == QEvent.Type.Close and viewer is not None:
            for layer in list(viewer.layers):
                flush_layer(layer)
        return False
