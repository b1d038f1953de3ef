"""The annotation store (format version 2): label chunks in zarr, everything else in SQLite.

Layout::

    STORE.zarr/
      zarr.json              group attributes: format, version 2, shape, image record, protocol
                             (a changed protocol is journaled: ``_protocol.py``)
      labels/                uint32 (y, x) array in 256 x 256 chunks (one file per chunk)
      instseg/store.sqlite   instance rows (+ R-tree on their boxes), journal, undo / redo
                             stacks, proposals and amodal masks, label-chunk checksums
      instseg/lock           the writer lock (flock) and its holder record
      instseg/actions.lock   held by the writer while it saves an action, shared by readers
                             in other processes while they read (``_actions.py``)

Crash consistency (zarr and SQLite together)
--------------------------------------------
SQLite runs in WAL mode with ``synchronous=FULL``: a committed transaction survives a
SIGKILL (and a power cut), an interrupted one leaves no trace. Label chunks are zarr files,
each replaced atomically (temporary file, then rename). One action is saved in three steps:

1. **Write-ahead record** (transaction 1): the action (labels before / after its region,
   rows, side records, next id) goes into ``journal`` as state ``pending``. Nothing else.
2. **Label chunks**: the region is written chunk by chunk (each chunk file atomic).
3. **Apply** (transaction 2): rows (and their R-tree boxes), side records, the CRCs of the
   chunks just written, the undo / redo stacks, ``next_id`` and the record's state
   ``applied`` - all or nothing.

Only then does :meth:`AnnotationStore.record` return, and the session reports the action.
A crash before 1 commits loses only an unreported action. A crash after 1 leaves a
``pending`` record: opening the store replays every pending record in order (steps 2 and 3
again). Replaying is idempotent - the chunks are set to the record's labels, rows and side
records to its values - so a crash during a replay is harmless too. Hence every reported
action is in the store after any crash, and the store never holds half an action: rows and
chunk checksums change in one transaction, chunks only ever to a journaled state.

A save that *raises* (an I/O error, a full disk) is undone before the error reaches the
caller: the region's chunks are written back to their earlier labels, and the record
becomes ``void`` (kept, so its sequence number is never reused). Store and session are then
exactly as before. If even that fails, the store turns read-only and says so; reopening it
completes the action from its record.

Integrity: every row, side record and journal payload carries a CRC-32, and so does every
label chunk file the store wrote. Opening checks the counts (rows, side records) and that
every recorded chunk file exists; reading labels checks the CRCs of the chunks read (a
missing or damaged chunk raises instead of reading as background); ``napari-instseg store
check`` checks everything and ``store repair`` rebuilds what it can from the journal.

Marks: facts saved atomically with an action
---------------------------------------------
A client that must know whether an action happened - the slide batch records "tile done"
and its seam buffer - passes ``marks`` (key -> bytes or None) with the action
(:meth:`AnnotationStore.record`, or ``window_session(..., marks=...)``). They are written
into ``marks_pending`` in transaction 1, beside the write-ahead record, and moved into
``marks`` in transaction 2. So a mark is in ``marks`` exactly when its action is applied:
a crash after 1 replays both, a save that raises voids the record and drops its marks.
:meth:`AnnotationStore.set_marks` saves marks alone (for work that committed nothing), and
:meth:`AnnotationStore.read_marks` reads them back (CRC-checked).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import uuid
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

import napari_instseg.core.store._lock as lock_file
from napari_instseg.core.edits import Edit, apply_edit
from napari_instseg.core.labels import as_label_image
from napari_instseg.core.protocol import AnnotationProtocol
from napari_instseg.core.store._actions import ACTIONS_LOCK_NAME, ActionLock
from napari_instseg.core.store._base import (
    CHUNK_PX,
    STORE_FORMAT,
    STORE_VERSION,
    StoreError,
    chunk_crc,
    is_store,
    read_version,
)
from napari_instseg.core.store._codec import crc32, decode_edit, decode_mask, encode_edit, side_value
from napari_instseg.core.store._db import DB_NAME, READING_BAND_PX, Database
from napari_instseg.core.store._geometry import boxes_of, chunk_ranges, shift_edit, shift_side
from napari_instseg.core.store._window import OutsideCounts, crossing_boxes, whole_edit, window_prelabels

__all__ = ["AnnotationStore"]

Region = tuple[int, int, int, int]
QUERY_COLUMNS = ("category_id", "occlusion", "review", "source", "annotator", "iscrowd")
"""Columns :meth:`AnnotationStore.count_instances` and :meth:`find_instances` select on."""


class AnnotationStore:
    """An annotation store on disk; also the session's edit sink (:meth:`record`).

    Use :meth:`create` for a new store and :meth:`open` for an existing one, then
    :meth:`session` (the whole image) or :meth:`window_session` (one region of a slide) to
    annotate with every action persisted before it returns.
    """

    def __init__(
        self, path: Path, *, read_only: bool, lock_message: str = "", lock: lock_file.Lock | None = None
    ) -> None:
        import zarr

        self.path = path
        self.read_only = read_only
        self.lock_message = lock_message
        self._lock = lock
        self._dir = path / "instseg"
        self._guard = threading.RLock()
        self._actions = ActionLock(self._dir / ACTIONS_LOCK_NAME, writer=not read_only)
        try:
            self._root = zarr.open_group(str(path), mode="r" if read_only else "r+")
            attrs: dict[str, Any] = dict(self._root.attrs)
            self._labels: Any = self._root["labels"]
            self.protocol = AnnotationProtocol.from_dict(attrs["protocol"], source=f"{path}: protocol")
        except (KeyError, ValueError, OSError, TypeError) as exc:
            raise StoreError(f"{path}: the store's zarr metadata or labels array is unreadable ({exc!r}).") from exc
        self.image: dict[str, Any] = dict(attrs.get("image", {}))
        db_path = self._dir / DB_NAME
        if not db_path.is_file():
            raise StoreError(
                f"{path}: {db_path.name} is missing (the instance table and journal); the labels are intact. "
                f"Run `napari-instseg store repair {path}` to rebuild the table from the labels."
            )
        try:
            self._db = Database(db_path, read_only=read_only)
            self._meta = self._db.meta()
        except Exception as exc:  # sqlite3.DatabaseError and friends
            raise StoreError(
                f"{path}: {db_path.name} cannot be read ({exc}); run `napari-instseg store check {path}`."
            ) from exc
        # a store dropped without close() (its last session gone) still gives its lock back
        weakref.finalize(self, _release, self._db, lock, self._actions)

    # -- creating and opening ---------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        labels_yx: Any,
        protocol: AnnotationProtocol | None = None,
        image: dict[str, Any] | None = None,
        table: pd.DataFrame | None = None,
    ) -> AnnotationStore:
        """Create a store holding ``labels_yx`` (or zeros of that shape, given as a tuple) and
        its instance ``table`` (default rows are added for ids it lacks).

        The store is built in a hidden sibling folder and renamed into place when complete,
        so a crash while creating leaves no half-made store at ``path``.

        Raises
        ------
        StoreError
            When ``path`` already exists.
        """
        from napari_instseg.core.store._build import build_store, clean_stale_builds

        target = Path(path)
        if target.exists():
            raise StoreError(f"{target} already exists; open it with AnnotationStore.open().")
        labels = None if isinstance(labels_yx, tuple) else as_label_image(labels_yx)
        shape = tuple(int(v) for v in labels_yx) if labels is None else labels.shape
        clean_stale_builds(target)
        tmp = target.with_name(f".{target.name}.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            build_store(
                tmp, (int(shape[0]), int(shape[1])), labels, protocol or AnnotationProtocol.default(), image, table
            )
            if target.exists():
                raise StoreError(
                    f"{target} was created by someone else meanwhile; open it with AnnotationStore.open()."
                )
            os.rename(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return cls.open(target)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, read_only: bool = False) -> AnnotationStore:
        """Open a store; take its lock, or open read-only (saying why) when another process
        holds it. Actions interrupted by a crash are completed first; a version-1 store is
        upgraded (a backup is kept until the upgrade has succeeded).

        Raises
        ------
        StoreError
            When ``path`` is no store, or the store is damaged (the message says what, and
            what ``napari-instseg store repair`` can recover).
        """
        target = Path(path)
        if not is_store(target):
            raise StoreError(f"{target} is not a napari-instseg annotation store (no {STORE_FORMAT} zarr.json).")
        version = read_version(target)
        if version > STORE_VERSION:
            raise StoreError(f"{target} is a version-{version} store; this napari-instseg reads up to {STORE_VERSION}.")
        needs_writer = not read_only or version < STORE_VERSION or _needs_recovery(target)
        try:
            lock, message = lock_file.acquire(_lock_path(target)) if needs_writer else (None, "")
        except OSError as exc:  # read-only media: no lock file can be made
            if not read_only:
                raise StoreError(
                    f"{target}: cannot take the writer lock ({exc}); open it with read_only=True."
                ) from exc
            lock, message = None, ""
        busy, message = message, "" if read_only else message
        try:
            if lock is not None and version == STORE_VERSION and (target / "instseg-v1-backup").exists():
                from napari_instseg.core.store._upgrade import finish_upgrade

                finish_upgrade(target)  # an upgrade that was interrupted after it had succeeded
            if version < STORE_VERSION:
                if lock is None:
                    raise StoreError(f"{target} is a version-{version} store that must be upgraded, but {busy}.")
                from napari_instseg.core.store._upgrade import upgrade_v1

                upgrade_v1(target)
            if lock is not None and read_only:  # a reader that could take the lock completes crashed actions
                recovering = cls(target, read_only=False, lock=lock)
                lock = None
                try:
                    recovering._recover()
                finally:
                    recovering.close()
            store = cls(target, read_only=read_only or lock is None, lock_message=message, lock=lock)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        try:
            if lock is not None:
                store._recover()
            store._check_on_open()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Release the lock (if this store holds it) and the database."""
        with self._guard:
            if getattr(self, "_db", None) is not None:
                self._db.close()
                self._db = None  # type: ignore[assignment]
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            self._actions.close()

    def __enter__(self) -> AnnotationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------------
    @property
    def shape_yx(self) -> tuple[int, int]:
        """(height, width) of the label image."""
        return (int(self._labels.shape[0]), int(self._labels.shape[1]))

    def read_labels(self, region_yx: Region | None = None) -> NDArray[np.uint32]:
        """The label image (or a (y0, x0, y1, x1) region of it).

        Raises
        ------
        StoreError
            When a chunk of the region is missing or damaged (its checksum differs), or, for
            the whole image, when labelled pixels have no table row.
        """
        whole = region_yx is None
        region = (0, 0, *self.shape_yx) if region_yx is None else _checked_region(region_yx, self.shape_yx, self.path)
        with self._reading():
            self._verify_chunks(region)
            y0, x0, y1, x1 = region
            out = np.asarray(self._labels[y0:y1, x0:x1], dtype=np.uint32)
            if whole:
                self._verify_rows_for(out)
        return out

    @property
    def table(self) -> pd.DataFrame:
        """The instance table as stored (every row)."""
        with self._reading():
            return self._db.rows_frame("ORDER BY i.id")

    @property
    def n_instances(self) -> int:
        """Number of rows in the instance table."""
        return int(self._db.conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0])

    def read_side(
        self, kind: str, region_yx: Region | None = None, *, ids: Iterable[int] | None = None
    ) -> dict[int, Any]:
        """Stored ``prelabel`` records or ``amodal`` masks by instance id (only those whose box
        overlaps ``region_yx``, or those of ``ids``, when given), in store coordinates."""
        if kind not in ("prelabel", "amodal"):
            raise StoreError(f"Unknown side-record kind {kind!r}; expected 'prelabel' or 'amodal'.")
        from napari_instseg.core.store._db import side_crc

        out = {}
        with self._reading():
            rows = self._db.side_rows(kind, region_yx, ids)
        for instance_id, y0, x0, y1, x1, h, w, source, score, blob, crc in rows:
            if side_crc(kind, instance_id, (y0, x0, y1, x1), (h, w), source, score, blob) != crc:
                raise StoreError(
                    f"{self.path}: the {kind} record of instance {instance_id} is damaged (checksum); "
                    f"run `napari-instseg store repair {self.path}`."
                )
            out[int(instance_id)] = side_value(kind, (y0, x0, y1, x1), decode_mask(blob, (h, w)), source, score)
        return out

    def bbox_of(self, instance_id: int) -> Region | None:
        """Where an instance may have pixels, (y0, x0, y1, x1); None without a box or row."""
        return self._db.boxes([int(instance_id)]).get(int(instance_id))

    # -- queries (no full load) --------------------------------------------------------------
    def instances_in(self, region_yx: Region) -> pd.DataFrame:
        """Rows of the instances whose box overlaps ``region_yx`` (R-tree query)."""
        y0, x0, y1, x1 = region_yx
        return self._db.rows_frame(
            "JOIN instances_box b ON i.id = b.id WHERE b.y0 < ? AND b.y1 > ? AND b.x0 < ? AND b.x1 > ? ORDER BY i.id",
            (y1, y0, x1, x0),
        )

    def count_instances(self, by: str, region_yx: Region | None = None) -> dict[Any, int]:
        """How many instances have each value of ``by`` (``category_id``, ``occlusion``,
        ``review``, ``source``, ``annotator`` or ``iscrowd``), in ``region_yx`` if given."""
        column = _query_column(by)
        join, params = _region_join(region_yx)
        cursor = self._db.conn.execute(
            f"SELECT i.{column}, COUNT(*) FROM instances i {join} GROUP BY i.{column} ORDER BY i.{column}", params
        )
        return {(bool(v) if column == "iscrowd" else v): int(n) for v, n in cursor}

    def find_instances(
        self,
        *,
        region_yx: Region | None = None,
        limit: int | None = None,
        offset: int = 0,
        **equal: Any,
    ) -> pd.DataFrame:
        """Rows matching column values (``category_id=2, review='pre-label'``), optionally in a
        region, by id, one page (``limit`` rows from ``offset``) at a time."""
        join, params = _region_join(region_yx)
        clauses = []
        for name, value in equal.items():
            clauses.append(f"i.{_query_column(name)} = ?")
            params.append(int(value) if name in ("category_id", "iscrowd") else value)
        where = (" AND " if "WHERE" in join else " WHERE ").join([join, *clauses]) if clauses else join
        page = f" LIMIT {int(limit)} OFFSET {int(offset)}" if limit is not None else ""
        return self._db.rows_frame(f"{where} ORDER BY i.id{page}", params)

    def next_prelabel(self, after_id: int | None = None) -> tuple[int, Region] | None:
        """The next instance still in review state ``pre-label`` in reading order (bands of
        256 px from the top, then left to right), after ``after_id`` (from the start when
        None); returns (id, box) or None when none is left. Uses an index: no full scan."""
        band = READING_BAND_PX
        sql = (
            f"SELECT id, y0, x0, y1, x1 FROM instances WHERE review = 'pre-label' AND y0 IS NOT NULL {{}} "
            f"ORDER BY y0 / {band}, x0, y0, id LIMIT 1"
        )
        params: tuple[Any, ...] = ()
        where = ""
        if after_id is not None:
            box = self.bbox_of(after_id)
            if box is not None:
                where = f"AND (y0 / {band}, x0, y0, id) > (?, ?, ?, ?)"
                params = (box[0] // band, box[1], box[0], int(after_id))
        row = self._db.conn.execute(sql.format(where), params).fetchone()
        return None if row is None else (int(row[0]), (int(row[1]), int(row[2]), int(row[3]), int(row[4])))

    # -- sessions ----------------------------------------------------------------------------
    def session(self, **kwargs: Any) -> Any:
        """An :class:`AnnotationSession` over the stored annotations, persisting every action
        here (undo / redo history included, also across reopening). On a read-only store
        every edit raises :class:`StoreError`."""
        from napari_instseg.core.session import AnnotationSession

        with self._reading():  # labels, rows and side records of one moment
            self._meta = self._db.meta() if self.read_only else self._meta
            labels, table = self.read_labels(), self.table
            prelabels, amodal = self.read_side("prelabel"), self.read_side("amodal")
        session = AnnotationSession(labels, table, self.protocol, prelabels=prelabels, **kwargs)
        session.amodal.update(amodal)
        session.ids.observe([self._next_id() - 1])
        sink = _Sink(self, (0, 0))
        session.undo_stack = [sink.remember(seq, self._stored_edit(seq)) for seq in self._db.stack("undo")]
        session.redo_stack = [sink.remember(seq, self._stored_edit(seq)) for seq in self._db.stack("redo")]
        session.sink = sink
        return session

    def window_session(
        self, region_yx: Region, *, marks: Mapping[str, bytes | None] | None = None, **kwargs: Any
    ) -> Any:
        """A session over one region (a slide's working window, tile + halo).

        Only the region's label chunks and the rows whose boxes touch it are read (R-tree);
        ids stay unique across the whole store (an object crossing a tile seam keeps its id,
        since the halo shows it); every edit is saved at its place in the slide, touching
        only the chunks it changes. Proposals and outlines lying wholly inside the region
        come along; of an object crossing the region's edge the session reviews the part
        inside, and the store adds the part outside (its review and ``prelabel_iou`` are
        those of the whole object), and saves its reject or delete for the whole object
        (see :mod:`napari_instseg.core.store._window`). The undo history covers this window
        visit. ``marks`` are saved with every action the session saves, in the same
        transaction (see :meth:`record`).
        """
        from napari_instseg.core.session import AnnotationSession

        region = _checked_region(region_yx, self.shape_yx, self.path)
        y0, x0, y1, x1 = region
        with self._reading():  # labels, rows and side records of one moment
            self._meta = self._db.meta() if self.read_only else self._meta
            labels = self.read_labels(region)
            table = self.instances_in(region)
            present = pd.unique(labels.ravel())
            missing = [int(i) for i in present if i and int(i) not in table.index]
            if missing:  # a box that does not cover its pixels: read those rows by id too
                extra = self._rows_by_id(missing)
                table = pd.concat([table, extra]).sort_index() if len(extra) else table
            sides = {kind: self.read_side(kind, region) for kind in ("prelabel", "amodal")}
            stored_boxes = self._db.boxes(table.index.tolist())
            crossing = crossing_boxes(region, stored_boxes, sides["prelabel"])
            elsewhere = [i for i in crossing if i not in sides["prelabel"]]  # a proposal wholly outside
            if elsewhere:
                sides["prelabel"].update(self.read_side("prelabel", ids=elsewhere))
                crossing = crossing_boxes(region, stored_boxes, sides["prelabel"])
        in_window = {
            kind: {
                i: m for i, v in sides[kind].items() if (m := shift_side(v, -y0, -x0, (y1 - y0, x1 - x0))) is not None
            }
            for kind in sides
        }
        cut = {i: v for i, v in sides["prelabel"].items() if i not in in_window["prelabel"]}
        prelabels = {**window_prelabels(region, cut), **in_window["prelabel"]}
        session = AnnotationSession(labels, table, self.protocol, prelabels=prelabels, **kwargs)
        session.amodal.update(in_window["amodal"])
        session.prelabel_outside = OutsideCounts(self, region, crossing, sides["prelabel"])
        session.ids.observe([self._next_id() - 1])
        session.sink = _Sink(self, (y0, x0), marks, crossing)
        return session

    # -- writing -----------------------------------------------------------------------------
    def record(
        self, kind: str, edit: Edit, *, target: int | None = None, marks: Mapping[str, bytes | None] | None = None
    ) -> int:
        """Persist one action (``do``, ``undo`` or ``redo`` of ``edit``, in store
        coordinates) before returning; returns its journal sequence number.

        ``target`` is the sequence number of the action an undo / redo concerns (default:
        the top of the undo / redo stack). ``marks`` (key -> bytes or None; a ``do`` only)
        are saved with the action, atomically: after any crash they are in the store
        (:meth:`read_marks`) exactly when the action is.

        Raises
        ------
        StoreError
            When the store is read-only, or the save failed (then nothing was saved: the
            store is as before, or read-only when even that could not be ensured).
        """
        with self._guard, self._actions.held():
            self._require_writable()
            if kind not in ("do", "undo", "redo"):
                raise StoreError(f"Unknown action kind {kind!r}; expected 'do', 'undo' or 'redo'.")
            if marks and kind != "do":
                raise StoreError(f"Marks are saved with a 'do' action only, not with a {kind!r}.")
            if kind != "do" and target is None:
                target = self._db.stack_top("undo" if kind == "undo" else "redo")
                if target is None:
                    raise StoreError(f"{self.path}: there is nothing to {kind}.")
            seq = self._db.last_seq() + 1
            payload = encode_edit(edit) if kind == "do" else None
            try:
                self._io("journal")
                with self._db.transaction() as conn:
                    conn.execute(
                        "INSERT INTO journal (seq, kind, target, op, payload, crc, state) "
                        "VALUES (?, ?, ?, ?, ?, ?, 'pending')",
                        (seq, kind, target, edit.op, payload, _payload_crc(kind, target, payload)),
                    )
                    if marks:
                        self._db.stage_marks(seq, dict(marks))
            except Exception as exc:
                raise StoreError(f"{self.path}: saving the {edit.op} failed ({exc}); nothing was saved.") from exc
            try:
                self._apply(seq, kind, edit, target)
            except BaseException as exc:
                self._roll_back(seq, kind, edit, exc)
            return seq

    def set_marks(self, marks: Mapping[str, bytes | None]) -> None:
        """Save marks on their own, in one transaction (for work that saved no action; marks
        that belong to an action go with it: :meth:`record`).

        Raises
        ------
        StoreError
            When the store is read-only or the save failed (then nothing was saved).
        """
        with self._guard:
            self._require_writable()
            try:
                self._io("marks")
                with self._db.transaction():
                    self._db.put_marks(dict(marks))
            except Exception as exc:
                raise StoreError(
                    f"{self.path}: saving marks {sorted(marks)[:3]} failed ({exc}); nothing was saved."
                ) from exc

    def read_marks(self, prefix: str = "") -> dict[str, bytes | None]:
        """The saved marks whose key starts with ``prefix`` (key -> value).

        Raises
        ------
        StoreError
            When a mark is damaged (its checksum differs).
        """
        from napari_instseg.core.store._db import mark_crc

        out = {}
        for key, value, crc in self._db.marks(prefix):
            if mark_crc(key, value) != crc:
                raise StoreError(
                    f"{self.path}: mark {key!r} is damaged (checksum differs); the labels and table do not "
                    "depend on it, but what it records (e.g. a slide batch's finished tiles) cannot be trusted."
                )
            out[key] = value
        return out

    def set_protocol(self, protocol: AnnotationProtocol) -> None:
        """Make ``protocol`` (categories, colours, rules) the store's protocol, saved before
        returning: journaled, atomic and checksummed like an action (see
        :mod:`napari_instseg.core.store._protocol`); a reopened store reads it back.

        Raises
        ------
        StoreError
            When the store is read-only, or the save failed (nothing was saved then).
        """
        from napari_instseg.core.store._protocol import set_protocol

        set_protocol(self, protocol)

    def bulk_write(self, origin_yx: tuple[int, int], labels_tile: Any, table: pd.DataFrame | None = None) -> int:
        """Write a tile of new instances in one transaction, without undo (the bulk path for
        building a slide's store; see :mod:`napari_instseg.core.store._bulk`). Returns the
        number of rows added."""
        from napari_instseg.core.store._bulk import bulk_write

        return bulk_write(self, origin_yx, labels_tile, table)

    def _apply(self, seq: int, kind: str, edit: Edit, target: int | None) -> None:
        """Steps 2 and 3 of a save (see the module docstring); idempotent."""
        parts = _EditParts()
        apply_edit(edit, parts, after=kind != "undo")  # what the action changes: the project's one rule
        labels = parts.labels
        crcs = self._write_region(parts.region_yx, labels)
        rows, sides = parts.rows, parts.sides
        boxes = boxes_of(parts.region_yx, labels, sides)
        self._io("apply")
        with self._db.transaction() as conn:
            n_rows = self._db.put_rows(rows, {})
            self._db.grow_boxes(boxes)
            for side_kind, values in sides.items():
                for instance_id, value in values.items():
                    self._db.add_meta_count(f"n_{side_kind}", self._db.put_side(side_kind, instance_id, value))
            self._db.put_chunks(crcs)
            self._db.apply_marks(seq)
            if kind == "do":
                conn.execute("UPDATE journal SET stack = NULL WHERE stack = 'redo'")
                conn.execute("UPDATE journal SET state = 'applied', stack = 'undo' WHERE seq = ?", (seq,))
            else:
                conn.execute(
                    "UPDATE journal SET stack = ? WHERE seq = ?", ("redo" if kind == "undo" else "undo", target)
                )
                conn.execute("UPDATE journal SET state = 'applied' WHERE seq = ?", (seq,))
            self._db.add_meta_count("n_rows", n_rows)
            self._db.set_meta(seq=seq, next_id=max(self._next_id(), int(edit.next_id)))
        self._meta = self._db.meta()

    def _roll_back(self, seq: int, kind: str, edit: Edit, exc: BaseException) -> None:
        """Undo a failed save (see the module docstring); always raises."""
        try:
            earlier = edit.labels_before if kind != "undo" else edit.labels_after
            crcs = self._write_region(edit.region_yx, earlier)
            with self._db.transaction() as conn:
                conn.execute("UPDATE journal SET state = 'void', stack = NULL WHERE seq = ?", (seq,))
                self._db.drop_marks(seq)
                self._db.put_chunks(crcs)
        except BaseException as second:
            self.read_only = True
            self.lock_message = (
                f"saving the {edit.op} failed ({exc}) and could not be undone ({second}); reopen the store "
                "(the action is then completed from its journal record)"
            )
            raise StoreError(f"{self.path}: {self.lock_message}. The store is read-only now.") from exc
        raise StoreError(
            f"{self.path}: saving the {edit.op} failed ({exc}); nothing was saved (store and session are as before)."
        ) from exc

    def _recover(self) -> None:
        """Complete every action whose journal record was written but not applied, and any
        interrupted bulk write."""
        from napari_instseg.core.store._bulk import recover_bulk

        with self._actions.held():
            self._recover_held(recover_bulk)

    def _recover_held(self, recover_bulk: Any) -> None:
        recover_bulk(self)
        for seq, kind, target in self._db.pending():
            source = seq if kind == "do" else target
            try:
                edit = self._stored_edit(int(source))  # type: ignore[arg-type]
            except StoreError as exc:
                raise StoreError(
                    f"{exc} It belongs to an action interrupted by a crash (record {seq}), which cannot be "
                    f"completed; the labels and table are intact up to the action before. Run "
                    f"`napari-instseg store repair {self.path}` to set the record aside (a backup is kept)."
                ) from None
            self._apply(seq, kind, edit, target)
        from napari_instseg.core.store._protocol import recover_protocol

        recover_protocol(self)

    def _write_region(self, region: Region | None, labels: NDArray[np.uint32] | None) -> dict[tuple[int, int], Any]:
        """Write ``labels`` at ``region`` chunk by chunk; the new CRC of each chunk file."""
        if region is None or labels is None:
            return {}
        y0, x0, _, _ = region
        crcs = {}
        for (cy, cx), (sy0, sx0, sy1, sx1) in chunk_ranges(region, self._chunk_yx()):
            self._io("chunk")
            self._labels[sy0:sy1, sx0:sx1] = labels[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
            crcs[(cy, cx)] = chunk_crc(self._labels, self.path, cy, cx)
        return crcs

    def _io(self, step: str) -> None:
        """Called before every write of an action (a seam for fault-injection tests)."""

    # -- integrity ---------------------------------------------------------------------------
    def _check_on_open(self) -> None:
        from napari_instseg.core.store._doctor import quick_problems

        with self._reading():
            self._meta = self._db.meta()  # counts of the same moment as the rows they check
            problems = quick_problems(self)
        if problems:
            listed = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            raise StoreError(
                f"{self.path} is damaged: {listed}. Run `napari-instseg store check {self.path}` for details and "
                f"`napari-instseg store repair {self.path}` to recover what can be recovered (a backup is kept)."
            )

    def _verify_chunks(self, region: Region) -> None:
        cy0, cx0 = region[0] // self._chunk_yx()[0], region[1] // self._chunk_yx()[1]
        cy1, cx1 = (region[2] - 1) // self._chunk_yx()[0], (region[3] - 1) // self._chunk_yx()[1]
        cursor = self._db.conn.execute(
            "SELECT cy, cx, crc FROM chunks WHERE cy BETWEEN ? AND ? AND cx BETWEEN ? AND ?", (cy0, cy1, cx0, cx1)
        )
        for cy, cx, crc in cursor.fetchall():
            found = chunk_crc(self._labels, self.path, cy, cx)
            if found != crc:
                what = "missing" if found is None else "damaged (checksum differs)"
                raise StoreError(
                    f"{self.path}: label chunk ({cy}, {cx}) (pixels y {cy * CHUNK_PX}.., x {cx * CHUNK_PX}..) is "
                    f"{what}; it is not read as background. Run `napari-instseg store repair {self.path}`."
                )

    def _verify_rows_for(self, labels: NDArray[np.uint32]) -> None:
        present = pd.unique(labels.ravel())
        present = present[present > 0]
        if not present.size:
            return
        known = set(self._db.boxes(present.tolist()))
        lost = sorted(int(i) for i in present if int(i) not in known)
        if lost:
            raise StoreError(
                f"{self.path}: {len(lost)} labelled instance(s) have no table row (ids {lost[:10]}); their tags "
                f"would read as defaults. Run `napari-instseg store repair {self.path}`."
            )

    # -- internals ---------------------------------------------------------------------------
    def _reading(self) -> contextlib.AbstractContextManager[None]:
        """Hold off the writer of another process while reading (a read-only store); the
        writer's own reads need nothing (see :mod:`napari_instseg.core.store._actions`)."""
        return self._actions.held() if self.read_only else contextlib.nullcontext()

    def _writing(self) -> contextlib.AbstractContextManager[None]:
        """Hold off readers in other processes while an action is saved."""
        return self._actions.held()

    def _require_writable(self) -> None:
        if self.read_only:
            raise StoreError(f"{self.path} is open read-only ({self.lock_message or 'as asked'}); nothing was saved.")

    def _next_id(self) -> int:
        return int(self._meta.get("next_id", 1))

    def _chunk_yx(self) -> tuple[int, int]:
        return (int(self._labels.chunks[0]), int(self._labels.chunks[1]))

    def _rows_by_id(self, ids: Iterable[int]) -> pd.DataFrame:
        ids = [int(i) for i in ids]
        marks = ",".join("?" * len(ids))
        return self._db.rows_frame(f"WHERE i.id IN ({marks})", ids)

    def _stored_edit(self, seq: int) -> Edit:
        """The action of journal record ``seq`` (checked against its CRC)."""
        try:
            payload, crc = self._db.payload(seq)
        except KeyError:
            raise StoreError(f"{self.path}: journal record {seq} is missing.") from None
        if crc32(payload) != crc:
            raise StoreError(f"{self.path}: journal record {seq} is damaged (checksum differs).")
        try:
            return decode_edit(payload)
        except Exception as exc:  # zipfile.BadZipFile, KeyError, ValueError ...
            raise StoreError(f"{self.path}: journal record {seq} cannot be decoded ({exc!r}).") from exc


class _Sink:
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


class _EditParts:
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


def _release(db: Database, lock: lock_file.Lock | None, actions: ActionLock | None = None) -> None:
    """Close the database and give the lock back (idempotent)."""
    db.close()
    if actions is not None:
        actions.close()
    if lock is not None:
        lock.release()


def _needs_recovery(store: Path) -> bool:
    """True when an action or bulk write was interrupted, or an upgrade left files behind (a
    reader then briefly takes the lock to complete it)."""
    import sqlite3

    if (store / "instseg-v1-backup").exists():
        return True
    try:
        conn = sqlite3.connect(f"file:{store / 'instseg' / DB_NAME}?mode=ro", uri=True)
        try:
            pending = conn.execute("SELECT 1 FROM journal WHERE state = 'pending' LIMIT 1").fetchone()
            bulk = conn.execute("SELECT value FROM meta WHERE key = 'bulk_pending'").fetchone()
            protocol = conn.execute("SELECT 1 FROM meta WHERE key = 'protocol_pending'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return False  # opening says what is wrong
    return pending is not None or (bulk is not None and bulk[0] != "null") or protocol is not None


def _lock_path(store: Path) -> Path:
    return store / "instseg" / "lock"


def _payload_crc(kind: str, target: int | None, payload: bytes | None) -> int:
    return crc32(payload) if payload is not None else crc32(f"{kind}:{target}".encode())


def _checked_region(region_yx: Region, shape_yx: tuple[int, int], path: Path) -> Region:
    y0, x0, y1, x1 = (int(v) for v in region_yx)
    if not (0 <= y0 < y1 <= shape_yx[0] and 0 <= x0 < x1 <= shape_yx[1]):
        raise StoreError(f"{path}: region (y0, x0, y1, x1) {region_yx} is empty or outside the labels {shape_yx}.")
    return (y0, x0, y1, x1)


def _query_column(name: str) -> str:
    if name not in QUERY_COLUMNS:
        raise StoreError(f"Cannot select instances by {name!r}; choose one of {QUERY_COLUMNS}.")
    return name


def _region_join(region_yx: Region | None) -> tuple[str, list[Any]]:
    if region_yx is None:
        return "", []
    y0, x0, y1, x1 = region_yx
    return (
        "JOIN instances_box b ON i.id = b.id WHERE b.y0 < ? AND b.y1 > ? AND b.x0 < ? AND b.x1 > ?",
        [y1, y0, x1, x0],
    )
