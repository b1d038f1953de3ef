"""The SQLite half of a store (``instseg/store.sqlite``): schema and row-level operations.

Tables: ``meta`` (key -> JSON value), ``instances`` (one row per instance id with its
bounding box and a CRC), ``instances_box`` (an R-tree on those boxes), ``side`` (pre-label
proposals and amodal masks keyed by (kind, id), with their own R-tree ``side_box``),
``journal`` (one write-ahead record per action: state ``pending`` / ``applied`` / ``void``;
``stack`` = ``undo`` / ``redo`` for the actions on the undo / redo stacks), ``chunks``
(the CRC of every label chunk file the store wrote; NULL = no file, all background), and
``marks`` / ``marks_pending``: small named records a client saves atomically with an
action (a batch's finished tiles; see :meth:`AnnotationStore.record`). ``marks_pending``
holds those of a write-ahead record until it is applied. The two mark tables are created
when a writer first opens a store made before them (older readers ignore them).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_instseg.core.instances import validate_table
from napari_instseg.core.store._codec import ROW_COLUMNS, crc32, encode_mask, row_crc, row_to_sql

__all__ = ["DB_NAME", "READING_BAND_PX", "Database"]

DB_NAME = "store.sqlite"
READING_BAND_PX = 256
"""Reading order = rows of this many pixels (by the top of the box), then left to right."""

_ROW_SQL = ", ".join(ROW_COLUMNS)
_ROW_COLUMN_TYPES = {
    "category_id": "INTEGER NOT NULL",
    "occlusion_manual": "INTEGER NOT NULL",
    "iscrowd": "INTEGER NOT NULL",
    "z_order": "INTEGER NOT NULL",
    "occluded_fraction": "REAL",
    "time_s": "REAL",
    "prelabel_iou": "REAL",
}

SCHEMA = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE instances (id INTEGER PRIMARY KEY, "
    + ", ".join(f"{c} {_ROW_COLUMN_TYPES.get(c, 'TEXT NOT NULL')}" for c in ROW_COLUMNS)
    + ", extra TEXT, y0 INTEGER, x0 INTEGER, y1 INTEGER, x1 INTEGER, crc INTEGER NOT NULL)",
    "CREATE VIRTUAL TABLE instances_box USING rtree_i32(id, y0, y1, x0, x1)",
    "CREATE INDEX instances_review ON instances (review, category_id)",
    "CREATE INDEX instances_category ON instances (category_id)",
    "CREATE INDEX instances_occlusion ON instances (occlusion)",
    f"CREATE INDEX instances_prelabel_order ON instances (y0 / {READING_BAND_PX}, x0, y0, id) "
    "WHERE review = 'pre-label' AND y0 IS NOT NULL",
    "CREATE TABLE side (sid INTEGER PRIMARY KEY, kind TEXT NOT NULL, id INTEGER NOT NULL, "
    "y0 INTEGER NOT NULL, x0 INTEGER NOT NULL, y1 INTEGER NOT NULL, x1 INTEGER NOT NULL, "
    "h INTEGER NOT NULL, w INTEGER NOT NULL, source TEXT, score REAL, mask BLOB NOT NULL, "
    "crc INTEGER NOT NULL, UNIQUE (kind, id))",
    "CREATE VIRTUAL TABLE side_box USING rtree_i32(sid, y0, y1, x0, x1)",
    "CREATE TABLE journal (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, target INTEGER, op TEXT, "
    "payload BLOB, crc INTEGER NOT NULL, state TEXT NOT NULL, stack TEXT)",
    "CREATE INDEX journal_stack ON journal (stack) WHERE stack IS NOT NULL",
    "CREATE INDEX journal_pending ON journal (state) WHERE state = 'pending'",
    "CREATE TABLE chunks (cy INTEGER NOT NULL, cx INTEGER NOT NULL, crc INTEGER, PRIMARY KEY (cy, cx)) WITHOUT ROWID",
]
MARKS_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS marks (key TEXT PRIMARY KEY, value BLOB, crc INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS marks_pending (seq INTEGER NOT NULL, key TEXT NOT NULL, value BLOB, "
    "crc INTEGER NOT NULL, PRIMARY KEY (seq, key))",
]
"""Additive tables (``IF NOT EXISTS``): made by every writer, so stores older than them get them."""


class Database:
    """A connection to a store's SQLite file with the operations the store needs."""

    def __init__(self, path: Path, *, read_only: bool) -> None:
        self.path = path
        uri = f"file:{path}?mode={'ro' if read_only else 'rw'}"
        self.conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=10)
        if not read_only:
            self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        if not read_only:
            for statement in MARKS_SCHEMA:
                self.conn.execute(statement)

    @classmethod
    def create(cls, path: Path) -> Database:
        """A new, empty database with the schema."""
        sqlite3.connect(path).close()
        db = cls(path, read_only=False)
        with db.transaction():
            for statement in SCHEMA:
                db.conn.execute(statement)
        return db

    def close(self) -> None:
        """Close the connection (a WAL checkpoint folds the log into the file)."""
        self.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; ROLLBACK on any exception."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- meta -------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        """Every meta value (JSON-decoded)."""
        return {k: json.loads(v) for k, v in self.conn.execute("SELECT key, value FROM meta")}

    def set_meta(self, **values: Any) -> None:
        """Set meta values (inside the caller's transaction)."""
        self.conn.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [(k, json.dumps(v)) for k, v in values.items()],
        )

    def add_meta_count(self, key: str, delta: int) -> None:
        """Add ``delta`` to an integer meta value."""
        if delta:
            self.conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + ? WHERE key = ?", (delta, key))

    # -- instance rows ----------------------------------------------------------------------
    def boxes(self, ids: Iterable[int]) -> dict[int, tuple[int, int, int, int] | None]:
        """Stored boxes of the existing rows among ``ids`` (None = no box yet)."""
        out: dict[int, tuple[int, int, int, int] | None] = {}
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            for i, y0, x0, y1, x1 in self.conn.execute(
                f"SELECT id, y0, x0, y1, x1 FROM instances WHERE id IN ({marks})", chunk
            ):
                out[int(i)] = None if y0 is None else (y0, x0, y1, x1)
        return out

    def put_rows(
        self, rows: dict[int, dict[str, Any] | None], boxes: dict[int, tuple[int, int, int, int] | None]
    ) -> int:
        """Insert / replace / (None) delete rows with their boxes; returns the change of the
        row count."""
        existing = self.boxes(rows)
        delta = 0
        for instance_id, row in rows.items():
            if row is None:
                if instance_id in existing:
                    self.conn.execute("DELETE FROM instances WHERE id = ?", (instance_id,))
                    self.conn.execute("DELETE FROM instances_box WHERE id = ?", (instance_id,))
                    delta -= 1
                continue
            values, extra = row_to_sql(row)
            box = boxes.get(instance_id, existing.get(instance_id))
            self.conn.execute(
                f"INSERT OR REPLACE INTO instances (id, {_ROW_SQL}, extra, y0, x0, y1, x1, crc) "
                f"VALUES ({','.join('?' * (len(values) + 7))})",
                (instance_id, *values, extra, *(box or (None,) * 4), row_crc(instance_id, values, extra)),
            )
            if box is not None:
                self._put_box(instance_id, box)
            delta += instance_id not in existing
        return delta

    def grow_boxes(self, boxes: dict[int, tuple[int, int, int, int]]) -> None:
        """Grow the boxes of existing rows to hold ``boxes`` (never shrinks: a box is where an
        instance may have pixels)."""
        stored = self.boxes(boxes)
        for instance_id, box in boxes.items():
            if instance_id not in stored:
                continue
            old = stored[instance_id]
            new = box if old is None else _union(old, box)
            if new != old:
                self.conn.execute(
                    "UPDATE instances SET y0 = ?, x0 = ?, y1 = ?, x1 = ? WHERE id = ?", (*new, instance_id)
                )
                self._put_box(instance_id, new)

    def _put_box(self, instance_id: int, box: tuple[int, int, int, int]) -> None:
        y0, x0, y1, x1 = box
        self.conn.execute("INSERT OR REPLACE INTO instances_box VALUES (?, ?, ?, ?, ?)", (instance_id, y0, y1, x0, x1))

    def rows_frame(self, where: str = "", params: Sequence[Any] = ()) -> pd.DataFrame:
        """Rows as an instance table (validated), selected by an SQL ``where`` clause on
        ``instances`` (alias ``i``)."""
        cursor = self.conn.execute(f"SELECT i.id, {_row_sql_i()}, i.extra FROM instances i {where}", params)
        return frame_from_records(cursor.fetchall())

    def ids_in_region(self, region_yx: tuple[int, int, int, int]) -> list[int]:
        """Ids whose box overlaps ``region_yx`` (R-tree query)."""
        y0, x0, y1, x1 = region_yx
        cursor = self.conn.execute(
            "SELECT id FROM instances_box WHERE y0 < ? AND y1 > ? AND x0 < ? AND x1 > ?", (y1, y0, x1, x0)
        )
        return [int(r[0]) for r in cursor]

    # -- side records -----------------------------------------------------------------------
    def put_side(self, kind: str, instance_id: int, value: Any) -> int:
        """Store / (None) delete one side record; returns the change of its count."""
        from napari_instseg.core.records import PrelabelRecord

        old = self.conn.execute("SELECT sid FROM side WHERE kind = ? AND id = ?", (kind, instance_id)).fetchone()
        if old is not None:
            self.conn.execute("DELETE FROM side WHERE sid = ?", old)
            self.conn.execute("DELETE FROM side_box WHERE sid = ?", old)
        if value is None:
            return -1 if old is not None else 0
        mask = value.proposal if isinstance(value, PrelabelRecord) else value
        y0, x0, y1, x1 = (int(v) for v in mask.bbox_yx)
        h, w = mask.mask.shape
        blob = encode_mask(mask.mask)
        source, score = (value.source, value.score) if isinstance(value, PrelabelRecord) else (None, None)
        score = None if score is None or np.isnan(score) else float(score)
        crc = side_crc(kind, instance_id, (y0, x0, y1, x1), (h, w), source, score, blob)
        cursor = self.conn.execute(
            "INSERT INTO side (kind, id, y0, x0, y1, x1, h, w, source, score, mask, crc) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (kind, instance_id, y0, x0, y1, x1, h, w, source, score, blob, crc),
        )
        self.conn.execute("INSERT OR REPLACE INTO side_box VALUES (?, ?, ?, ?, ?)", (cursor.lastrowid, y0, y1, x0, x1))
        return 0 if old is not None else 1

    def side_rows(
        self, kind: str, region_yx: tuple[int, int, int, int] | None = None, ids: Iterable[int] | None = None
    ) -> list[tuple[Any, ...]]:
        """(id, y0, x0, y1, x1, h, w, source, score, mask, crc) of a kind's records (those whose
        box overlaps ``region_yx`` when given, else those of ``ids`` when given)."""
        columns = "s.id, s.y0, s.x0, s.y1, s.x1, s.h, s.w, s.source, s.score, s.mask, s.crc"
        if region_yx is None and ids is not None:
            found: list[tuple[Any, ...]] = []
            for chunk in _chunks(list(ids)):
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT {columns} FROM side s WHERE kind = ? AND id IN ({marks}) ORDER BY id"
                found.extend(self.conn.execute(sql, (kind, *chunk)).fetchall())
            return found
        if region_yx is None:
            return self.conn.execute(f"SELECT {columns} FROM side s WHERE kind = ? ORDER BY id", (kind,)).fetchall()
        y0, x0, y1, x1 = region_yx
        return self.conn.execute(
            f"SELECT {columns} FROM side s JOIN side_box b ON s.sid = b.sid WHERE s.kind = ? "
            "AND b.y0 < ? AND b.y1 >= ? AND b.x0 < ? AND b.x1 >= ? ORDER BY s.id",
            (kind, y1, y0, x1, x0),
        ).fetchall()

    # -- label chunks -----------------------------------------------------------------------
    def put_chunks(self, crcs: dict[tuple[int, int], int | None]) -> None:
        """Record the CRC of label chunk files (None = no file)."""
        self.conn.executemany(
            "INSERT OR REPLACE INTO chunks (cy, cx, crc) VALUES (?, ?, ?)",
            [(cy, cx, c) for (cy, cx), c in crcs.items()],
        )

    # -- marks ------------------------------------------------------------------------------
    def has_marks(self) -> bool:
        """True when the mark tables exist (a store no writer opened since they were added
        has none; read-only connections cannot add them)."""
        found = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'marks'").fetchone()
        return found is not None

    def marks(self, prefix: str) -> list[tuple[str, bytes | None, int]]:
        """(key, value, stored CRC) of the applied marks whose key starts with ``prefix``."""
        if not self.has_marks():
            return []
        if prefix:  # a range of the primary key: no scan of every tile's mark
            above = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            cursor = self.conn.execute(
                "SELECT key, value, crc FROM marks WHERE key >= ? AND key < ? ORDER BY key", (prefix, above)
            )
        else:
            cursor = self.conn.execute("SELECT key, value, crc FROM marks ORDER BY key")
        return [(str(k), None if v is None else bytes(v), int(c)) for k, v, c in cursor]

    def put_marks(self, marks: dict[str, bytes | None]) -> None:
        """Set marks (inside the caller's transaction)."""
        self.conn.executemany(
            "INSERT OR REPLACE INTO marks (key, value, crc) VALUES (?, ?, ?)",
            [(k, v, mark_crc(k, v)) for k, v in marks.items()],
        )

    def stage_marks(self, seq: int, marks: dict[str, bytes | None]) -> None:
        """Keep the marks of write-ahead record ``seq`` until it is applied (caller's transaction)."""
        self.conn.executemany(
            "INSERT OR REPLACE INTO marks_pending (seq, key, value, crc) VALUES (?, ?, ?, ?)",
            [(seq, k, v, mark_crc(k, v)) for k, v in marks.items()],
        )

    def apply_marks(self, seq: int) -> None:
        """Move the staged marks of record ``seq`` into ``marks`` (caller's transaction; idempotent)."""
        self.conn.execute(
            "INSERT OR REPLACE INTO marks (key, value, crc) SELECT key, value, crc FROM marks_pending WHERE seq = ?",
            (seq,),
        )
        self.conn.execute("DELETE FROM marks_pending WHERE seq = ?", (seq,))

    def drop_marks(self, seq: int) -> None:
        """Forget the staged marks of a voided record ``seq`` (caller's transaction)."""
        self.conn.execute("DELETE FROM marks_pending WHERE seq = ?", (seq,))

    # -- journal ----------------------------------------------------------------------------
    def last_seq(self) -> int:
        """The highest sequence number used (void records count: numbers are never reused)."""
        return int(self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM journal").fetchone()[0])

    def stack(self, which: str) -> list[int]:
        """The undo stack (bottom to top) or the redo stack (bottom to top)."""
        order = "ASC" if which == "undo" else "DESC"
        cursor = self.conn.execute(f"SELECT seq FROM journal WHERE stack = ? ORDER BY seq {order}", (which,))
        return [int(r[0]) for r in cursor]

    def stack_top(self, which: str) -> int | None:
        """The top of a stack (None when empty)."""
        agg = "MAX" if which == "undo" else "MIN"
        value = self.conn.execute(f"SELECT {agg}(seq) FROM journal WHERE stack = ?", (which,)).fetchone()[0]
        return None if value is None else int(value)

    def pending(self) -> list[tuple[int, str, int | None]]:
        """(seq, kind, target) of records written but not applied, oldest first."""
        cursor = self.conn.execute("SELECT seq, kind, target FROM journal WHERE state = 'pending' ORDER BY seq")
        return [(int(s), str(k), None if t is None else int(t)) for s, k, t in cursor]

    def payload(self, seq: int) -> tuple[bytes, int]:
        """A record's payload bytes and stored CRC (KeyError when there is no such record)."""
        row = self.conn.execute("SELECT payload, crc FROM journal WHERE seq = ?", (seq,)).fetchone()
        if row is None or row[0] is None:
            raise KeyError(seq)
        return bytes(row[0]), int(row[1])


def side_crc(
    kind: str,
    instance_id: int,
    box: tuple[int, int, int, int],
    shape: tuple[int, int],
    source: Any,
    score: Any,
    blob: bytes,
) -> int:
    """Checksum of one side record."""
    head = json.dumps([kind, int(instance_id), list(box), list(shape), source, score]).encode()
    return crc32(head + bytes(blob))


def mark_crc(key: str, value: bytes | None) -> int:
    """Checksum of one mark (``None`` values differ from empty ones)."""
    return crc32(json.dumps([key, value is None]).encode() + bytes(value or b""))


def frame_from_records(records: list[tuple[Any, ...]]) -> pd.DataFrame:
    """An instance table from (id, *schema values, extra) tuples (column-wise: this is the
    path of a million-row table)."""
    if not records:
        return validate_table(pd.DataFrame(index=pd.Index([], name="id", dtype=np.int64)))
    frame = pd.DataFrame.from_records(records, columns=["id", *ROW_COLUMNS, "extra"]).set_index("id")
    extras = frame.pop("extra")
    if extras.notna().any():
        expanded = pd.DataFrame([json.loads(e) if isinstance(e, str) and e else {} for e in extras], index=frame.index)
        frame = frame.join(expanded)
    return validate_table(frame.sort_index(), source="store table")


def _row_sql_i() -> str:
    return ", ".join(f"i.{c}" for c in ROW_COLUMNS)


def _union(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _chunks(values: list[int], size: int = 500) -> Iterator[list[int]]:
    for start in range(0, len(values), size):
        yield [int(v) for v in values[start : start + size]]
