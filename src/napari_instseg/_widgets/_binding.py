"""The glue between one napari Labels layer and its annotation session.

Both dock widgets (Prompt and Instances) edit the same layer through the same session, so
the session belongs to the layer: :func:`layer_session` returns the one :class:`LayerSession`
of a layer (kept in a weak mapping, so it lives exactly as long as the layer). It shares the
label array between layer and session, turns napari paint strokes into recorded edits (saved
at most one second after the stroke), keeps ``layer.features`` equal to the session's
instance table, and can attach an on-disk store so every action is saved as it happens.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any

import numpy as np
from psygnal import Signal

from napari_instseg._adapters import (
    IMAGE_KEY,
    PROTOCOL_KEY,
    STORE_KEY,
    protocol_from_metadata,
    touched_ids_from_paint,
)
from napari_instseg._reader_preference import prefer_our_reader
from napari_instseg.core.errors import InstsegError
from napari_instseg.core.instances import from_features, to_features

__all__ = ["PAINT_SAVE_DELAY_MS", "LayerSession", "ReadOnlyError", "bound_layers", "layer_session", "unbind"]


class ReadOnlyError(InstsegError, PermissionError):
    """An edit of a layer whose store another process holds (opened read-only)."""


PAINT_SAVE_DELAY_MS = 1000
"""A paint stroke is recorded (and saved to the store) at most this long after it ends."""

_SESSIONS: weakref.WeakKeyDictionary[Any, LayerSession] = weakref.WeakKeyDictionary()


class LayerSession:
    """A Labels layer bound to an :class:`~napari_instseg.core.session.AnnotationSession`.

    Attributes
    ----------
    changed : Signal
        Emitted after every change of labels or table (widgets refresh on it).
    """

    changed = Signal()

    def __init__(self, layer: Any) -> None:
        from qtpy.QtCore import QTimer

        self.layer = layer
        self.store: Any = None
        self.notice = ""
        """A persistent warning for the panels (a read-only store, naming who holds it)."""
        self._owns_store = False
        self.session: Any = None
        self._dirty: set[int] = set()
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(PAINT_SAVE_DELAY_MS)
        self._timer.timeout.connect(self.flush)
        self._adopt(self._session_from_layer())
        layer.events.paint.connect(self._on_paint)
        self.store_message = ""
        if layer.metadata.get(STORE_KEY):  # read from a store: keep saving to it
            self.store_message = self.attach_store(layer.metadata[STORE_KEY])
            prefer_our_reader(layer.metadata[STORE_KEY])

    # -- binding -------------------------------------------------------------------------------
    def _session_from_layer(self) -> Any:
        from napari_instseg.core.session import AnnotationSession

        layer = self.layer
        table = from_features(layer.features) if "index" in layer.features.columns else None
        protocol = protocol_from_metadata(layer.metadata, layer.features)
        from napari_instseg._widgets._settings import remembered_annotator

        return AnnotationSession(np.asarray(layer.data), table, protocol, annotator=remembered_annotator())

    def _adopt(self, session: Any) -> None:
        prompter = getattr(self.session, "prompter", None)
        self.session = session
        self._earlier = {id(edit) for edit in session.undo_stack}  # restored from a store: made before
        self._warned_about: int | None = None
        session.prompter = session.prompter or prompter
        if self.layer.data is not session.labels_yx:
            self.layer.data = session.labels_yx  # one array: session edits show at once
        self.sync()

    def attach_store(self, path: str | os.PathLike[str]) -> str:
        """Save this layer's annotations in the store at ``path`` (created from the layer when
        missing, else opened and shown). Returns a message for the user."""
        from napari_instseg.core.store import AnnotationStore, is_store

        self.flush()
        if self.store is not None and self._owns_store:
            self.store.close()
        target = Path(path)
        if is_store(target):
            store = AnnotationStore.open(target)
        else:
            store = AnnotationStore.create(
                target,
                self.session.labels_yx,
                self.session.protocol,
                image=self._image_record(),
                table=self.session.table,
            )
            _carry_side_records(store, self.session)
        self.store, self._owns_store = store, True
        self.layer.metadata = {**self.layer.metadata, STORE_KEY: str(target.resolve())}
        prefer_our_reader(target)
        self._adopt(store.session(annotator=self.session.annotator))
        self._set_read_only(bool(store.read_only), str(store.lock_message or f"{target} is open read-only"))
        if store.read_only:
            return self.notice
        return f"Saving to {target} as you annotate."

    def _image_record(self) -> dict[str, Any]:
        """The COCO image record of the layer: from its metadata, else the image layer it
        annotates (same shape, prefer the one named in the labels layer's name)."""
        record = self.layer.metadata.get(IMAGE_KEY)
        if record and record.get("file_name"):
            return dict(record)
        return {"file_name": image_file_name(self.layer)}

    @property
    def read_only(self) -> bool:
        """True when the layer's store is held by another process (edits are refused)."""
        return bool(self.store is not None and self.store.read_only)

    def _set_read_only(self, read_only: bool, message: str) -> None:
        self.notice = f"READ-ONLY: {message}. Edits are refused; close the other session to edit." if read_only else ""
        self.layer.editable = not read_only
        self.changed.emit()

    def set_protocol(self, protocol: Any) -> str:
        """Use ``protocol`` (categories, rules) for this layer, saved in its store first when
        one is attached (a failed save changes nothing). Returns a message for the user.

        Raises
        ------
        ReadOnlyError
            When another process holds the store.
        StoreError
            When the store could not save it (nothing changed then).
        """
        if self.read_only:
            raise ReadOnlyError(f"protocol change refused: {self.notice}")
        if self.store is not None:
            self.store.set_protocol(protocol)
        self.session.protocol = protocol
        self.layer.metadata = {**self.layer.metadata, PROTOCOL_KEY: protocol.to_dict()}
        self.changed.emit()
        saved = " Saved with the store." if self.store is not None else ""
        return f"Protocol {protocol.name!r}: {len(protocol.categories)} categories.{saved}"

    def use_session(self, session: Any, store: Any, *, why_read_only: str = "") -> None:
        """Show and edit an existing session (a slide window's) whose store someone else owns.

        ``why_read_only`` replaces the notice of a store opened read-only on purpose (somebody
        else's image, finished work), which no other session holds.
        """
        self.flush()
        self.store, self._owns_store = store, False
        self._adopt(session)
        read_only = bool(getattr(store, "read_only", False))
        if read_only and why_read_only:
            self.notice = f"READ-ONLY: {why_read_only}"
            self.layer.editable = False
            self.changed.emit()
            return
        self._set_read_only(read_only, str(getattr(store, "lock_message", "") or "the store is open read-only"))

    def next_undo(self) -> str:
        """What the next undo would undo (empty when there is nothing to undo)."""
        from napari_instseg.core.edits import describe_edit

        stack = [] if self.session is None else self.session.undo_stack
        return describe_edit(stack[-1]) if stack else ""

    def undo_warning(self) -> str:
        """Before undoing an action made before the store was opened here (restored with the
        store: a pre-label run of another process, yesterday's work), a message naming it, once;
        the caller then does not undo. Empty when the next undo is this session's, or named already."""
        stack = [] if self.session is None else self.session.undo_stack
        if self.read_only or not stack or id(stack[-1]) not in self._earlier or self._warned_about == id(stack[-1]):
            return ""
        self._warned_about = id(stack[-1])
        return (
            f"Nothing undone yet: the last action in this image's history is {self.next_undo()}, "
            "made before this image was opened (saved in its store: a pre-label run, earlier work). "
            "Undo again to undo it."
        )

    def close(self) -> None:
        """Record pending paint and release the store's lock (if this binding opened it)."""
        self.flush()
        if self.store is not None and self._owns_store:
            self.store.close()
            self._owns_store = False

    # -- napari events -------------------------------------------------------------------------
    def _on_paint(self, event: Any) -> None:
        """napari emits ``paint`` before it writes the pixels: note the ids, record them later."""
        self._dirty.update(touched_ids_from_paint(event.value))
        self._dirty.add(0)  # something was painted, even if only erased
        if not self._timer.isActive():
            self._timer.start()

    def flush(self) -> None:
        """Record pixel changes not yet recorded (as one undoable, saved edit).

        Changes are found by comparing with the last recorded labels, so this also catches
        edits napari makes without a ``paint`` event (its own Ctrl-Z / Ctrl-Shift-Z).
        """
        self._timer.stop()
        if self.session is None or self.read_only:
            return
        dirty, self._dirty = self._dirty, set()
        if self.session.labels_edited(dirty - {0}) is not None:
            self.sync()

    # -- showing --------------------------------------------------------------------------------
    def sync(self) -> None:
        """Redraw the layer and copy the instance table into its ``features``."""
        self.layer.refresh()
        self.layer.features = to_features(self.session.table)
        self.changed.emit()

    def step(self, action: str) -> tuple[Any, str]:
        """Undo or redo (``action``): ``(edit or None, "")``, or ``(None, warning)`` when the
        undo would reach work made before this image was opened (:meth:`undo_warning`): it is
        named first, and undone only on the next call. Raises as :meth:`run` does."""
        warning = self.undo_warning() if action == "undo" else ""
        if warning:
            return None, warning
        return self.run(action), ""

    def run(self, action: str, *args: Any, **kwargs: Any) -> Any:
        """Call a session action (after recording pending paint), then sync the layer."""
        if self.read_only:
            raise ReadOnlyError(f"{action.replace('_', ' ')} refused: {self.notice}")
        self.flush()
        result = getattr(self.session, action)(*args, **kwargs)
        self.sync()
        return result


def _carry_side_records(store: Any, session: Any) -> None:
    """Save the session's pre-label proposals and amodal outlines in a store just created from
    its labels and table (the store starts with neither), as one undoable action."""
    from napari_instseg.core.edits import Edit

    if not session.prelabels and not session.amodal:
        return
    ids = tuple(sorted({*session.prelabels, *session.amodal}))
    edit = Edit(
        "import",
        ids,
        prelabels_before=dict.fromkeys(session.prelabels),
        prelabels_after=dict(session.prelabels),
        amodal_before=dict.fromkeys(session.amodal),
        amodal_after=dict(session.amodal),
        next_id=int(session.ids.next_id),
    )
    store.record("do", edit)


def image_file_name(layer: Any) -> str:
    """The file name of the image a labels layer annotates: the image layer's source file
    when napari read it from one, else ``<image layer name>.tif``; the labels layer's own
    name only when no image layer of its shape is open."""
    viewer = _viewer_of(layer)
    shape_yx = tuple(layer.data.shape[-2:])
    candidates = []
    if viewer is not None:
        from napari.layers import Image

        for other in viewer.layers:
            if isinstance(other, Image) and not other.multiscale:
                other_yx = tuple(other.data.shape[:2] if other.rgb else other.data.shape[-2:])
                if other_yx == shape_yx:
                    candidates.append(other)
    if not candidates:
        return f"{layer.name}.tif"
    named = [c for c in candidates if layer.name.startswith(c.name)]
    image = (named or candidates)[0]
    path = getattr(getattr(image, "source", None), "path", None)
    return Path(path).name if path else f"{image.name}.tif"


def _viewer_of(layer: Any) -> Any:
    try:
        from napari import current_viewer

        viewer = current_viewer()
    except ImportError:  # pragma: no cover
        return None
    return viewer if viewer is not None and layer in viewer.layers else None


def layer_session(layer: Any) -> LayerSession:
    """The one :class:`LayerSession` of ``layer`` (made on first use). Pending paint is
    recorded when the layer leaves its viewer, when the viewer closes and when the
    application quits (:func:`napari_instseg._widgets._closing.flush_on_close`)."""
    bound = _SESSIONS.get(layer)
    if bound is None:
        bound = LayerSession(layer)
        _SESSIONS[layer] = bound
        from napari_instseg._widgets._closing import flush_on_close

        flush_on_close(layer)
    return bound


def bound_layers() -> list[tuple[Any, LayerSession]]:
    """(layer, binding) of every bound layer alive."""
    return list(_SESSIONS.items())


def unbind(layer: Any) -> LayerSession | None:
    """Forget the binding of ``layer`` (a layer that left its viewer): it stops listening to
    paint; returns it (None when the layer was not bound). The caller closes it."""
    bound = _SESSIONS.pop(layer, None)
    if bound is not None:
        layer.events.paint.disconnect(bound._on_paint)
    return bound
