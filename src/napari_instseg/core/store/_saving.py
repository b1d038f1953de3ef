"""Saving actions: the three steps of a save (write-ahead record, label chunks, apply), the
roll-back of a save that raised, completing actions a crash interrupted, and marks.

The design - and why a crash at any moment leaves every reported action in the store and
never half an action - is in :mod:`napari_instseg.core.store._store`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.edits import Edit, apply_edit
from napari_instseg.core.store._base import StoreError, chunk_crc
from napari_instseg.core.store._codec import crc32, encode_edit
from napari_instseg.core.store._geometry import boxes_of, chunk_ranges

if TYPE_CHECKING:
    from napari_instseg.core.store._store import AnnotationStore

__all__ = [
    "EditParts",
    "apply_action",
    "read_marks",
    "record_action",
    "recover_pending",
    "roll_back",
    "set_marks",
    "write_region",
]

Region = tuple[int, int, int, int]


def record_action(
    store: AnnotationStore, kind: str, edit: Edit, target: int | None, marks: Mapping[str, bytes | None] | None
) -> int:
    """See :meth:`AnnotationStore.record`."""
    with store._guard, store._actions.held():
        store._require_writable()
        if kind not in ("do", "undo", "redo"):
            raise StoreError(f"Unknown action kind {kind!r}; expected 'do', 'undo' or 'redo'.")
        if marks and kind != "do":
            raise StoreError(f"Marks are saved with a 'do' action only, not with a {kind!r}.")
        if kind != "do" and target is None:
            target = store._db.stack_top("undo" if kind == "undo" else "redo")
            if target is None:
                raise StoreError(f"{store.path}: there is nothing to {kind}.")
        seq = store._db.last_seq() + 1
        payload = encode_edit(edit) if kind == "do" else None
        try:
            store._io("journal")
            with store._db.transaction() as conn:
                conn.execute(
                    "INSERT INTO journal (seq, kind, target, op, payload, crc, state) "
                    "VALUES (?, ?, ?, ?, ?, ?, 'pending')",
                    (seq, kind, target, edit.op, payload, payload_crc(kind, target, payload)),
                )
                if marks:
                    store._db.stage_marks(seq, dict(marks))
        except Exception as exc:
            raise StoreError(f"{store.path}: saving the {edit.op} failed ({exc}); nothing was saved.") from exc
        try:
            store._apply(seq, kind, edit, target)
        except BaseException as exc:
            store._roll_back(seq, kind, edit, exc)
        return seq


def set_marks(store: AnnotationStore, marks: Mapping[str, bytes | None]) -> None:
    """See :meth:`AnnotationStore.set_marks`."""
    with store._guard:
        store._require_writable()
        try:
            store._io("marks")
            with store._db.transaction():
                store._db.put_marks(dict(marks))
        except Exception as exc:
            raise StoreError(
                f"{store.path}: saving marks {sorted(marks)[:3]} failed ({exc}); nothing was saved."
            ) from exc


def read_marks(store: AnnotationStore, prefix: str = "") -> dict[str, bytes | None]:
    """See :meth:`AnnotationStore.read_marks`."""
    from napari_instseg.core.store._db import mark_crc

    out = {}
    for key, value, crc in store._db.marks(prefix):
        if mark_crc(key, value) != crc:
            raise StoreError(
                f"{store.path}: mark {key!r} is damaged (checksum differs); the labels and table do not "
                "depend on it, but what it records (e.g. a slide batch's finished tiles) cannot be trusted."
            )
        out[key] = value
    return out


def apply_action(store: AnnotationStore, seq: int, kind: str, edit: Edit, target: int | None) -> None:
    """Steps 2 and 3 of a save (see :mod:`napari_instseg.core.store._store`); idempotent."""
    parts = EditParts()
    apply_edit(edit, parts, after=kind != "undo")  # what the action changes: the project's one rule
    labels = parts.labels
    crcs = store._write_region(parts.region_yx, labels)
    rows, sides = parts.rows, parts.sides
    boxes = boxes_of(parts.region_yx, labels, sides)
    store._io("apply")
    with store._db.transaction() as conn:
        n_rows = store._db.put_rows(rows, {})
        store._db.grow_boxes(boxes)
        for side_kind, values in sides.items():
            for instance_id, value in values.items():
                store._db.add_meta_count(f"n_{side_kind}", store._db.put_side(side_kind, instance_id, value))
        store._db.put_chunks(crcs)
        store._db.apply_marks(seq)
        if kind == "do":
            conn.execute("UPDATE journal SET stack = NULL WHERE stack = 'redo'")
            conn.execute("UPDATE journal SET state = 'applied', stack = 'undo' WHERE seq = ?", (seq,))
        else:
            conn.execute("UPDATE journal SET stack = ? WHERE seq = ?", ("redo" if kind == "undo" else "undo", target))
            conn.execute("UPDATE journal SET state = 'applied' WHERE seq = ?", (seq,))
        store._db.add_meta_count("n_rows", n_rows)
        store._db.set_meta(seq=seq, next_id=max(store._next_id(), int(edit.next_id)))
    store._meta = store._db.meta()


def roll_back(store: AnnotationStore, seq: int, kind: str, edit: Edit, exc: BaseException) -> None:
    """Undo a failed save (see :mod:`napari_instseg.core.store._store`); always raises."""
    try:
        earlier = edit.labels_before if kind != "undo" else edit.labels_after
        crcs = store._write_region(edit.region_yx, earlier)
        with store._db.transaction() as conn:
            conn.execute("UPDATE journal SET state = 'void', stack = NULL WHERE seq = ?", (seq,))
            store._db.drop_marks(seq)
            store._db.put_chunks(crcs)
    except BaseException as second:
        store.read_only = True
        store.lock_message = (
            f"saving the {edit.op} failed ({exc}) and could not be undone ({second}); reopen the store "
            "(the action is then completed from its journal record)"
        )
        raise StoreError(f"{store.path}: {store.lock_message}. The store is read-only now.") from exc
    raise StoreError(
        f"{store.path}: saving the {edit.op} failed ({exc}); nothing was saved (store and session are as before)."
    ) from exc


def recover_pending(store: AnnotationStore, recover_bulk: Any) -> None:
    """Complete the interrupted bulk write and every pending action (the action lock held)."""
    recover_bulk(store)
    for seq, kind, target in store._db.pending():
        source = seq if kind == "do" else target
        try:
            edit = store._stored_edit(int(source))  # type: ignore[arg-type]
        except StoreError as exc:
            raise StoreError(
                f"{exc} It belongs to an action interrupted by a crash (record {seq}), which cannot be "
                f"completed; the labels and table are intact up to the action before. Run "
                f"`napari-instseg store repair {store.path}` to set the record aside (a backup is kept)."
            ) from None
        store._apply(seq, kind, edit, target)
    from napari_instseg.core.store._protocol import recover_protocol

    recover_protocol(store)


def write_region(
    store: AnnotationStore, region: Region | None, labels: NDArray[np.uint32] | None
) -> dict[tuple[int, int], Any]:
    """Write ``labels`` at ``region`` chunk by chunk; the new CRC of each chunk file."""
    if region is None or labels is None:
        return {}
    y0, x0, _, _ = region
    crcs = {}
    for (cy, cx), (sy0, sx0, sy1, sx1) in chunk_ranges(region, store._chunk_yx()):
        store._io("chunk")
        store._labels[sy0:sy1, sx0:sx1] = labels[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
        crcs[(cy, cx)] = chunk_crc(store._labels, store.path, cy, cx)
    return crcs


class EditParts:
    """An :class:`~napari_instseg.core.edits.EditTarget` that only collects what an edit
    writes, so the store can write it in its own order (label chunks, then one transaction)."""

    def __init__(self) -> None:
        self.region_yx: tuple[int, int, int, int] | None = None
        self.labels: NDArray[np.uint32] | None = None
        self.rows: dict[int, dict[str, Any] | None] = {}
        self.sides: dict[str, dict[int, Any]] = {"prelabel": {}, "amodal": {}}

    def write_labels(self, region_yx: tuple[int, int, int, int], labels: NDArray[np.uint32]) -> None:
        self.region_yx, self.labels = region_yx, labels

    def write_rows(self, rows: dict[int, dict[str, Any] | None]) -> None:
        self.rows = dict(rows)

    def write_side(self, kind: str, values: dict[int, Any]) -> None:
        self.sides[kind] = dict(values)


def payload_crc(kind: str, target: int | None, payload: bytes | None) -> int:
    return crc32(payload) if payload is not None else crc32(f"{kind}:{target}".encode())
