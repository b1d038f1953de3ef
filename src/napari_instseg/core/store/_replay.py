"""Repair of a store whose database opens: the journal replayed to restore chunks, rows and
side records (used by :func:`napari_instseg.core.store.repair_store`)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from napari_instseg.core.edits import Edit
    from napari_instseg.core.store._db import Database
    from napari_instseg.core.store._doctor import StoreReport

__all__ = ["repair_database"]


@dataclass
class _Replay:
    """What the intact journal says: final rows and side records, and the actions in order."""

    rows: dict[int, dict[str, Any] | None] = field(default_factory=dict)
    side: dict[tuple[str, int], Any] = field(default_factory=dict)
    steps: list[tuple[Edit, bool]] = field(default_factory=list)
    next_id: int = 1


def _replay(db: Database, report: StoreReport) -> _Replay:
    from napari_instseg.core.store._codec import crc32, decode_edit

    edits: dict[int, Edit | None] = {}
    out = _Replay()
    records = db.conn.execute(
        "SELECT seq, kind, target, payload, crc FROM journal WHERE state = 'applied' ORDER BY seq"
    ).fetchall()
    for seq, kind, target, payload, crc in records:
        edit: Edit | None = None
        if kind == "do":
            if payload is not None and crc32(bytes(payload)) == crc:
                try:
                    edit = decode_edit(bytes(payload))
                except Exception:  # damaged: set aside below
                    edit = None
            edits[seq] = edit
        elif crc32(f"{kind}:{target}".encode()) == crc:
            edit = edits.get(target)
        if edit is None:
            with db.transaction() as conn:
                conn.execute("UPDATE journal SET state = 'void', stack = NULL WHERE seq = ?", (seq,))
            report.repaired.append(f"set damaged journal record {seq} aside (its action can no longer be undone)")
            continue
        after = kind != "undo"
        out.steps.append((edit, after))
        out.rows.update(edit.rows_after if after else edit.rows_before)
        for name, kind_name in (("prelabels", "prelabel"), ("amodal", "amodal")):
            values = getattr(edit, f"{name}_{'after' if after else 'before'}")
            out.side.update({(kind_name, i): v for i, v in values.items()})
        out.next_id = max(out.next_id, int(edit.next_id))
    return out


def _void_damaged_pending(db: Database, report: StoreReport) -> None:
    """Set aside interrupted (pending) actions whose record cannot be replayed; the intact
    ones are completed by the next open, as always."""
    from napari_instseg.core.store._doctor import damaged_records

    damaged = dict(damaged_records(db))
    for seq, kind, target in db.pending():
        source = seq if kind == "do" else target
        if seq in damaged or source in damaged or source is None:
            with db.transaction() as conn:
                conn.execute("UPDATE journal SET state = 'void', stack = NULL WHERE seq = ?", (seq,))
            report.repaired.append(f"set aside interrupted action {seq}: its journal record is damaged")
            report.lost.append(f"the action of journal record {seq}, interrupted by a crash (never reported done)")


def repair_database(path: Path, labels: Any, db: Database, report: StoreReport) -> None:
    """Repair chunks, rows, side records and state from the journal (see the doctor)."""
    from napari_instseg.core.store._doctor import bad_chunks, damaged_rows, damaged_side

    _void_damaged_pending(db, report)
    replay = _replay(db, report)
    damaged_chunks = bad_chunks(path, labels, db)
    _rebuild_chunks(path, labels, db, replay, damaged_chunks, report)
    _repair_rows(labels, db, replay, set(damaged_rows(db)), report)
    _repair_side(db, replay, set(damaged_side(db)), report)
    _repair_state(labels, db, replay, report)


def _rebuild_chunks(
    path: Path, labels: Any, db: Database, replay: _Replay, bad: dict[tuple[int, int], Any], report: StoreReport
) -> None:
    from napari_instseg.core.store._base import chunk_crc, chunk_file

    created_empty = bool(db.meta().get("created_empty", False))
    ch, cw = (int(labels.chunks[0]), int(labels.chunks[1]))
    for cy, cx in sorted(bad):
        y0, x0 = cy * ch, cx * cw
        y1, x1 = min(y0 + ch, labels.shape[0]), min(x0 + cw, labels.shape[1])
        buffer = np.zeros((y1 - y0, x1 - x0), np.uint32)
        known = np.full(buffer.shape, created_empty)
        for edit, after in replay.steps:
            values = edit.labels_after if after else edit.labels_before
            if edit.region_yx is None or values is None:
                continue
            ey0, ex0, ey1, ex1 = edit.region_yx
            iy0, ix0, iy1, ix1 = max(y0, ey0), max(x0, ex0), min(y1, ey1), min(x1, ex1)
            if iy0 >= iy1 or ix0 >= ix1:
                continue
            buffer[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = values[iy0 - ey0 : iy1 - ey0, ix0 - ex0 : ix1 - ex0]
            known[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = True
        source = chunk_file(labels, path, cy, cx)
        if source.is_file():  # the damaged file goes to the backup first
            saved = Path(report.backup or path) / "labels" / source.relative_to(path / "labels")
            saved.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, saved)
        labels[y0:y1, x0:x1] = buffer
        with db.transaction():
            db.put_chunks({(cy, cx): chunk_crc(labels, path, cy, cx)})
        unknown = int(np.count_nonzero(~known))
        report.repaired.append(f"rebuilt label chunk ({cy}, {cx}) from the journal")
        if unknown:
            report.lost.append(f"{unknown} pixels of label chunk ({cy}, {cx}) that no journal record covers (now 0)")


def _repair_rows(labels: Any, db: Database, replay: _Replay, damaged: set[int], report: StoreReport) -> None:
    from napari_instseg.core.instances import new_row
    from napari_instseg.core.store._doctor import label_ids
    from napari_instseg.core.store._upgrade import scan_boxes

    stored = {int(r[0]) for r in db.conn.execute("SELECT id FROM instances")}
    missing = sorted(label_ids(labels) - stored)
    if not missing and not damaged:
        return
    boxes = scan_boxes(labels)
    rows: dict[int, dict[str, Any] | None] = {}
    for instance_id in [*missing, *sorted(damaged)]:
        known = replay.rows.get(instance_id)
        rows[instance_id] = known if known is not None else new_row()
        what = "from the journal" if known is not None else "as a default row (its tags are lost)"
        label = "missing" if instance_id in missing else "damaged"
        report.repaired.append(f"restored the {label} row of instance {instance_id} {what}")
        if known is None:
            report.lost.append(f"the tags of instance {instance_id}")
    with db.transaction():
        db.put_rows(rows, {i: boxes[i] for i in rows if i in boxes})


def _repair_side(db: Database, replay: _Replay, damaged: set[tuple[str, int]], report: StoreReport) -> None:
    stored = {(str(k), int(i)) for k, i in db.conn.execute("SELECT kind, id FROM side")}
    with db.transaction():
        for key, value in sorted(replay.side.items()):
            if value is not None and (key not in stored or key in damaged):
                db.put_side(key[0], key[1], value)
                report.repaired.append(f"restored the {key[0]} record of instance {key[1]} from the journal")
        for key in sorted(damaged - {k for k, v in replay.side.items() if v is not None}):
            db.put_side(key[0], key[1], None)
            report.lost.append(f"the damaged {key[0]} record of instance {key[1]} (kept in the backup)")


def _repair_state(labels: Any, db: Database, replay: _Replay, report: StoreReport) -> None:
    from napari_instseg.core.store._doctor import label_ids

    meta = db.meta()
    top = max({int(r[0]) for r in db.conn.execute("SELECT id FROM instances")} | label_ids(labels) | {0})
    counts = {
        "n_rows": int(db.conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0]),
        "n_prelabel": int(db.conn.execute("SELECT COUNT(*) FROM side WHERE kind = 'prelabel'").fetchone()[0]),
        "n_amodal": int(db.conn.execute("SELECT COUNT(*) FROM side WHERE kind = 'amodal'").fetchone()[0]),
    }
    old_next = meta["next_id"] if isinstance(meta.get("next_id"), int) else 1
    fixed = {**counts, "next_id": max(int(old_next), top + 1, replay.next_id)}
    changed = {k: v for k, v in fixed.items() if meta.get(k) != v}
    if changed:
        with db.transaction():
            db.set_meta(**changed)
        report.repaired.append(f"recomputed the state: {changed}")
