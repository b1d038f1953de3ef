"""Sessions over a store: the whole image (:meth:`AnnotationStore.session`) or one region of
a slide (:meth:`AnnotationStore.window_session`), and the sink that saves their actions.

(:class:`AnnotationStore` is :class:`napari_instseg.core.store.AnnotationStore`.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from napari_instseg.core.edits import Edit
from napari_instseg.core.store._geometry import checked_region, shift_edit, shift_side
from napari_instseg.core.store._window import OutsideCounts, crossing_boxes, whole_edit, window_prelabels

if TYPE_CHECKING:
    from napari_instseg.core.store._store import AnnotationStore

__all__ = ["Sink", "store_session", "window_session"]

Region = tuple[int, int, int, int]


def store_session(store: AnnotationStore, **kwargs: Any) -> Any:
    """See :meth:`AnnotationStore.session`."""
    from napari_instseg.core.session import AnnotationSession

    with store._reading():  # labels, rows and side records of one moment
        store._meta = store._db.meta() if store.read_only else store._meta
        labels, table = store.read_labels(), store.table
        prelabels, amodal = store.read_side("prelabel"), store.read_side("amodal")
    session = AnnotationSession(labels, table, store.protocol, prelabels=prelabels, **kwargs)
    session.amodal.update(amodal)
    session.ids.observe([store._next_id() - 1])
    sink = Sink(store, (0, 0))
    session.undo_stack = [sink.remember(seq, store._stored_edit(seq)) for seq in store._db.stack("undo")]
    session.redo_stack = [sink.remember(seq, store._stored_edit(seq)) for seq in store._db.stack("redo")]
    session.sink = sink
    return session


def window_session(
    store: AnnotationStore, region_yx: Region, marks: Mapping[str, bytes | None] | None, **kwargs: Any
) -> Any:
    """See :meth:`AnnotationStore.window_session`."""
    from napari_instseg.core.session import AnnotationSession

    region = checked_region(region_yx, store.shape_yx, store.path)
    y0, x0, y1, x1 = region
    with store._reading():  # labels, rows and side records of one moment
        store._meta = store._db.meta() if store.read_only else store._meta
        labels = store.read_labels(region)
        table = store.instances_in(region)
        present = pd.unique(labels.ravel())
        missing = [int(i) for i in present if i and int(i) not in table.index]
        if missing:  # a box that does not cover its pixels: read those rows by id too
            extra = store._rows_by_id(missing)
            table = pd.concat([table, extra]).sort_index() if len(extra) else table
        sides = {kind: store.read_side(kind, region) for kind in ("prelabel", "amodal")}
        stored_boxes = store._db.boxes(table.index.tolist())
        crossing = crossing_boxes(region, stored_boxes, sides["prelabel"])
        elsewhere = [i for i in crossing if i not in sides["prelabel"]]  # a proposal wholly outside
        if elsewhere:
            sides["prelabel"].update(store.read_side("prelabel", ids=elsewhere))
            crossing = crossing_boxes(region, stored_boxes, sides["prelabel"])
    in_window = {
        kind: {i: m for i, v in sides[kind].items() if (m := shift_side(v, -y0, -x0, (y1 - y0, x1 - x0))) is not None}
        for kind in sides
    }
    cut = {i: v for i, v in sides["prelabel"].items() if i not in in_window["prelabel"]}
    prelabels = {**window_prelabels(region, cut), **in_window["prelabel"]}
    session = AnnotationSession(labels, table, store.protocol, prelabels=prelabels, **kwargs)
    session.amodal.update(in_window["amodal"])
    session.prelabel_outside = OutsideCounts(store, region, crossing, sides["prelabel"])
    session.ids.observe([store._next_id() - 1])
    session.sink = Sink(store, (y0, x0), marks, crossing)
    return session


class Sink:
    """Saves a session's actions in the store at their place (window origin added) and keeps
    which journal record each of the session's undoable edits is, and the edit saved for it
    (a window's removal of an object crossing its edge is saved whole: ``crossing`` boxes,
    :func:`~napari_instseg.core.store._window.whole_edit`)."""

    def __init__(
        self,
        store: AnnotationStore,
        origin_yx: tuple[int, int],
        marks: Mapping[str, bytes | None] | None = None,
        crossing: Mapping[int, Region] | None = None,
    ) -> None:
        self.store, self.origin_yx, self.marks = store, origin_yx, marks
        self.crossing = dict(crossing or {})
        self._seqs: dict[int, tuple[Edit, int, Edit]] = {}

    def remember(self, seq: int, edit: Edit, saved: Edit | None = None) -> Edit:
        self._seqs[id(edit)] = (edit, seq, edit if saved is None else saved)
        return edit

    def record(self, kind: str, edit: Edit) -> None:
        """Persist ``edit`` (raises StoreError when the store is read-only or the save fails)."""
        known = self._seqs.get(id(edit))
        target, saved = (known[1], known[2]) if known is not None and known[0] is edit else (None, None)
        if saved is None:
            saved = shift_edit(edit, *self.origin_yx) if self.origin_yx != (0, 0) else edit
            if kind == "do" and self.crossing:
                saved = whole_edit(self.store, saved, self.crossing)
        seq = self.store.record(kind, saved, target=target, marks=self.marks if kind == "do" else None)
        if kind == "do":
            self.remember(seq, edit, saved)
