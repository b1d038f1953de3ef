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

Where the code is
-----------------
This module holds :class:`AnnotationStore` and its reads; its other methods hand over to
sibling modules: ``_opening`` (create, open), ``_saving`` (the three steps of a save, the
roll-back, completing crashed actions, marks), ``_sessions`` (whole-image and window
sessions, the sink that saves their actions), ``_queries`` (SQL queries by column, region,
reading order) and ``_checks`` (the checks of every open and read).
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

import napari_instseg.core.store._checks as checks
import napari_instseg.core.store._lock as lock_file
import napari_instseg.core.store._opening as opening
import napari_instseg.core.store._queries as queries
import napari_instseg.core.store._saving as saving
import napari_instseg.core.store._sessions as sessions
from napari_instseg.core.edits import Edit
from napari_instseg.core.protocol import AnnotationProtocol
from napari_instseg.core.store._actions import ACTIONS_LOCK_NAME, ActionLock
from napari_instseg.core.store._base import StoreError
from napari_instseg.core.store._codec import crc32, decode_edit, decode_mask, side_value
from napari_instseg.core.store._db import DB_NAME, Database
from napari_instseg.core.store._geometry import checked_region

__all__ = ["AnnotationStore"]

Region = tuple[int, int, int, int]


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
        return opening.create_store(cls, path, labels_yx, protocol, image, table)

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
        return opening.open_store(cls, path, read_only=read_only)

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
        region = (0, 0, *self.shape_yx) if region_yx is None else checked_region(region_yx, self.shape_yx, self.path)
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
        return queries.count_instances(self, by, region_yx)

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
        return queries.find_instances(self, region_yx, limit, offset, equal)

    def next_prelabel(self, after_id: int | None = None) -> tuple[int, Region] | None:
        """The next instance still in review state ``pre-label`` in reading order (bands of
        256 px from the top, then left to right), after ``after_id`` (from the start when
        None); returns (id, box) or None when none is left. Uses an index: no full scan."""
        return queries.next_prelabel(self, after_id)

    # -- sessions ----------------------------------------------------------------------------
    def session(self, **kwargs: Any) -> Any:
        """An :class:`AnnotationSession` over the stored annotations, persisting every action
        here (undo / redo history included, also across reopening). On a read-only store
        every edit raises :class:`StoreError`."""
        return sessions.store_session(self, **kwargs)

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
        return sessions.window_session(self, region_yx, marks, **kwargs)

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
        return saving.record_action(self, kind, edit, target, marks)

    def set_marks(self, marks: Mapping[str, bytes | None]) -> None:
        """Save marks on their own, in one transaction (for work that saved no action; marks
        that belong to an action go with it: :meth:`record`).

        Raises
        ------
        StoreError
            When the store is read-only or the save failed (then nothing was saved).
        """
        saving.set_marks(self, marks)

    def read_marks(self, prefix: str = "") -> dict[str, bytes | None]:
        """The saved marks whose key starts with ``prefix`` (key -> value).

        Raises
        ------
        StoreError
            When a mark is damaged (its checksum differs).
        """
        return saving.read_marks(self, prefix)

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
        saving.apply_action(self, seq, kind, edit, target)

    def _roll_back(self, seq: int, kind: str, edit: Edit, exc: BaseException) -> None:
        """Undo a failed save (see the module docstring); always raises."""
        saving.roll_back(self, seq, kind, edit, exc)

    def _recover(self) -> None:
        """Complete every action whose journal record was written but not applied, and any
        interrupted bulk write."""
        from napari_instseg.core.store._bulk import recover_bulk

        with self._actions.held():
            self._recover_held(recover_bulk)

    def _recover_held(self, recover_bulk: Any) -> None:
        recover_bulk(self)
        saving.recover_pending(self, recover_bulk)

    def _write_region(self, region: Region | None, labels: NDArray[np.uint32] | None) -> dict[tuple[int, int], Any]:
        """Write ``labels`` at ``region`` chunk by chunk; the new CRC of each chunk file."""
        return saving.write_region(self, region, labels)

    def _io(self, step: str) -> None:
        """Called before every write of an action (a seam for fault-injection tests)."""

    # -- integrity ---------------------------------------------------------------------------
    def _check_on_open(self) -> None:
        checks.check_on_open(self)

    def _verify_chunks(self, region: Region) -> None:
        checks.verify_chunks(self, region)

    def _verify_rows_for(self, labels: NDArray[np.uint32]) -> None:
        checks.verify_rows_for(self, labels)

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


def _release(db: Database, lock: lock_file.Lock | None, actions: ActionLock | None = None) -> None:
    """Close the database and give the lock back (idempotent)."""
    db.close()
    if actions is not None:
        actions.close()
    if lock is not None:
        lock.release()
