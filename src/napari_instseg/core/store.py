"""Crash-safe annotation store: one zarr group on disk per image.

Layout::

    STORE.zarr/
      zarr.json                      group attributes: format, shape, image record, protocol
      labels/                        uint32 (y, x) array in 256 x 256 chunks
      instseg/state.json             last applied journal entry, undo / redo stacks, next id
      instseg/table.json             the instance table
      instseg/side/<kind>_<id>.npz   pre-label proposals and amodal masks
      instseg/journal/<seq>.npz      one record per action (edit, undo or redo)
      instseg/lock                   which process writes the store

Every action is written to the journal first (atomically: temporary file, then rename), then
applied (label chunks, table, side files; each write atomic), then ``state.json`` is
replaced. A crash between those steps leaves a journal record newer than the state; opening
the store re-applies it (applying is idempotent). So a committed instance, once the session's
call has returned, survives any crash, and the store is never half-written.

A second writer finds the lock and opens the store read-only, saying who holds it.
"""

from __future__ import annotations

import io
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from napari_instseg.core._io import atomic_write_bytes, atomic_write_text
from napari_instseg.core.coco._fields import json_scalar
from napari_instseg.core.edits import CroppedMask, Edit
from napari_instseg.core.errors import InstsegError
from napari_instseg.core.instances import apply_rows, validate_table
from napari_instseg.core.labels import as_label_image
from napari_instseg.core.protocol import AnnotationProtocol
from napari_instseg.core.records import PrelabelRecord

__all__ = ["STORE_FORMAT", "AnnotationStore", "StoreError", "is_store"]

STORE_FORMAT = "napari-instseg-store"
STORE_VERSION = 1
CHUNK_PX = 256


class StoreError(InstsegError, ValueError):
    """A store is missing, of another format, or read-only."""


def is_store(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a napari-instseg annotation store."""
    meta = Path(path) / "zarr.json"
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text()).get("attributes", {}).get("format") == STORE_FORMAT
    except (OSError, ValueError):
        return False


@dataclass
class _State:
    seq: int = 0
    undo: list[int] | None = None
    redo: list[int] | None = None
    next_id: int = 1

    def to_json(self) -> str:
        return json.dumps({"seq": self.seq, "undo": self.undo or [], "redo": self.redo or [], "next_id": self.next_id})


class AnnotationStore:
    """An annotation store on disk; also the session's edit sink (:meth:`record`).

    Use :meth:`create` for a new store and :meth:`open` for an existing one, then
    :meth:`session` to annotate with every action persisted before it returns.
    """

    def __init__(self, path: Path, *, read_only: bool, lock_message: str = "") -> None:
        import zarr

        self.path = path
        self.read_only = read_only
        self.lock_message = lock_message
        self._root = zarr.open_group(str(path), mode="r" if read_only else "r+")
        attrs = dict(self._root.attrs)
        self.protocol = AnnotationProtocol.from_dict(attrs["protocol"], source=f"{path}: protocol")
        self.image = dict(attrs.get("image", {}))
        self._labels = self._root["labels"]
        self._dir = path / "instseg"
        self._state = self._read_state()
        self._table = self._read_table()
        self._side: dict[str, dict[int, Any]] = {}
        self._owns_lock = not read_only

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

        Raises
        ------
        StoreError
            When ``path`` already exists.
        """
        import zarr

        target = Path(path)
        if target.exists():
            raise StoreError(f"{target} already exists; open it with AnnotationStore.open().")
        # a shape tuple makes an empty store of any size (a slide): nothing is allocated or written
        labels = None if isinstance(labels_yx, tuple) else as_label_image(labels_yx)
        shape = tuple(int(v) for v in labels_yx) if labels is None else labels.shape
        protocol = protocol or AnnotationProtocol.default()
        root = zarr.open_group(str(target), mode="w")
        root.attrs.update(
            {
                "format": STORE_FORMAT,
                "version": STORE_VERSION,
                "shape_yx": list(shape),
                "protocol": protocol.to_dict(),
                "image": dict(image or {}),
            }
        )
        array = root.create_array("labels", shape=shape, dtype=np.uint32, chunks=(CHUNK_PX, CHUNK_PX), fill_value=0)
        if labels is not None and labels.any():
            array[...] = labels
        (target / "instseg" / "journal").mkdir(parents=True)
        (target / "instseg" / "side").mkdir()
        from napari_instseg.core.instances import table_for_ids

        present = np.zeros(0, np.uint32) if labels is None else np.unique(labels)
        ids = np.union1d(present[present > 0], [] if table is None else table.index.to_numpy()).astype(np.int64)
        table = table_for_ids(ids, table, defaults={"category_id": protocol.categories[0].id})
        atomic_write_text(target / "instseg" / "table.json", _table_json(table))
        next_id = int(ids.max()) + 1 if ids.size else 1
        atomic_write_text(target / "instseg" / "state.json", _State(next_id=next_id).to_json())
        return cls.open(target)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, read_only: bool = False) -> AnnotationStore:
        """Open a store; take its lock, or open read-only (saying why) when another live
        process holds it. An action interrupted by a crash is completed first."""
        target = Path(path)
        if not is_store(target):
            raise StoreError(f"{target} is not a napari-instseg annotation store (no {STORE_FORMAT} zarr.json).")
        message = ""
        if not read_only:
            message = _acquire_lock(target / "instseg" / "lock")
            read_only = bool(message)
        store = cls(target, read_only=read_only, lock_message=message)
        if not read_only:
            store._recover()
        return store

    def close(self) -> None:
        """Release the lock (if this store holds it)."""
        if self._owns_lock:
            lock = self._dir / "lock"
            try:
                if json.loads(lock.read_text()).get("pid") == os.getpid():
                    lock.unlink()
            except (OSError, ValueError):
                pass
            self._owns_lock = False

    def __enter__(self) -> AnnotationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------------
    def read_labels(self, region_yx: tuple[int, int, int, int] | None = None) -> NDArray[np.uint32]:
        """The label image (or a (y0, x0, y1, x1) region of it)."""
        if region_yx is None:
            return np.asarray(self._labels[...], dtype=np.uint32)
        y0, x0, y1, x1 = region_yx
        return np.asarray(self._labels[y0:y1, x0:x1], dtype=np.uint32)

    @property
    def table(self) -> pd.DataFrame:
        """The instance table as stored."""
        return self._table.copy()

    def read_side(self, kind: str) -> dict[int, Any]:
        """Stored ``prelabel`` records or ``amodal`` masks by instance id (read from disk once,
        then kept up to date in memory as edits are saved)."""
        if kind not in self._side:
            found = {}
            for path in sorted((self._dir / "side").glob(f"{kind}_*.npz")):
                found[int(path.stem.split("_")[1])] = _load_side(path, kind)
            self._side[kind] = found
        return dict(self._side[kind])

    def session(self, **kwargs: Any) -> Any:
        """An :class:`AnnotationSession` over the stored annotations, persisting every action
        here (undo / redo history included, also across reopening)."""
        from napari_instseg.core.session import AnnotationSession

        session = AnnotationSession(self.read_labels(), self.table, self.protocol, **kwargs)
        session.prelabels.update(self.read_side("prelabel"))
        session.amodal.update(self.read_side("amodal"))
        session.ids.observe([self._state.next_id - 1])
        session.undo_stack = [self._read_record(seq)[1] for seq in self._state.undo or []]
        session.redo_stack = [self._read_record(seq)[1] for seq in self._state.redo or []]
        session.sink = None if self.read_only else self
        return session

    def window_session(self, region_yx: tuple[int, int, int, int], **kwargs: Any) -> Any:
        """A session over one region (a slide's working window, tile + halo).

        Only the region is read; ids stay unique across the whole store (an object crossing
        a tile seam keeps its id, since the halo shows it); every edit is saved at its place
        in the slide, touching only the chunks it changes. Proposals and outlines lying wholly
        inside the region come along. The undo history covers this window visit.
        """
        from napari_instseg.core.session import AnnotationSession

        y0, x0, y1, x1 = region_yx
        session = AnnotationSession(self.read_labels(region_yx), self.table, self.protocol, **kwargs)
        for kind, target in (("prelabel", session.prelabels), ("amodal", session.amodal)):
            for instance_id, value in self.read_side(kind).items():
                moved = _shift_side(value, -y0, -x0, (y1 - y0, x1 - x0))
                if moved is not None:
                    target[instance_id] = moved
        session.ids.observe([self._state.next_id - 1])
        session.sink = None if self.read_only else _OffsetSink(self, (y0, x0))
        return session

    # -- writing -----------------------------------------------------------------------------
    def record(self, kind: str, edit: Edit) -> None:
        """Persist one action (``do``, ``undo`` or ``redo`` of ``edit``) before returning."""
        if self.read_only:
            raise StoreError(f"{self.path} is open read-only ({self.lock_message or 'as asked'}); nothing was saved.")
        seq = self._state.seq + 1
        if kind == "do":
            payload = _edit_to_npz(edit, kind)
        else:
            target = (self._state.undo or [])[-1] if kind == "undo" else (self._state.redo or [])[-1]
            payload = _marker_npz(kind, target)
        atomic_write_bytes(self._journal_path(seq), payload)  # the write-ahead record
        self._apply_record(seq)

    def _apply_record(self, seq: int) -> None:
        kind, edit, target = self._read_record_full(seq)
        state = self._state
        undo, redo = list(state.undo or []), list(state.redo or [])
        if kind == "do":
            self._apply_edit(edit, after=True)
            undo.append(seq)
            redo = []
        elif kind == "undo":
            self._apply_edit(edit, after=False)
            undo = [s for s in undo if s != target]
            redo.append(target)
        else:
            self._apply_edit(edit, after=True)
            redo = [s for s in redo if s != target]
            undo.append(target)
        self._state = _State(seq, undo, redo, max(state.next_id, edit.next_id))
        atomic_write_text(self._dir / "state.json", self._state.to_json())

    def _apply_edit(self, edit: Edit, *, after: bool) -> None:
        labels = edit.labels_after if after else edit.labels_before
        if edit.region_yx is not None and labels is not None:
            y0, x0, y1, x1 = edit.region_yx
            self._labels[y0:y1, x0:x1] = labels  # zarr rewrites only the touched chunks
        rows = edit.rows_after if after else edit.rows_before
        if rows:
            self._table = apply_rows(self._table, rows, source=str(self.path))
            atomic_write_text(self._dir / "table.json", _table_json(self._table))
        for kind, values in (
            ("prelabel", edit.prelabels_after if after else edit.prelabels_before),
            ("amodal", edit.amodal_after if after else edit.amodal_before),
        ):
            cached = self._side.get(kind)
            for instance_id, value in values.items():
                path = self._dir / "side" / f"{kind}_{instance_id}.npz"
                if value is None:
                    path.unlink(missing_ok=True)
                else:
                    atomic_write_bytes(path, _side_npz(kind, value))
                if cached is not None:
                    if value is None:
                        cached.pop(instance_id, None)
                    else:
                        cached[instance_id] = value

    def _recover(self) -> None:
        """Complete an action whose journal record was written but not fully applied."""
        while self._journal_path(self._state.seq + 1).is_file():
            self._apply_record(self._state.seq + 1)

    # -- internals ---------------------------------------------------------------------------
    def _journal_path(self, seq: int) -> Path:
        return self._dir / "journal" / f"{seq:08d}.npz"

    def _read_state(self) -> _State:
        data = json.loads((self._dir / "state.json").read_text())
        return _State(int(data["seq"]), list(data["undo"]), list(data["redo"]), int(data["next_id"]))

    def _read_table(self) -> pd.DataFrame:
        records = json.loads((self._dir / "table.json").read_text())
        frame = pd.DataFrame.from_records(records["rows"], columns=records["columns"])
        frame = frame.set_index("id") if len(frame) else frame.set_index(pd.Index([], name="id"))
        return validate_table(frame, source=f"{self.path} table")

    def _read_record(self, seq: int) -> tuple[str, Edit]:
        kind, edit, _ = self._read_record_full(seq)
        return kind, edit

    def _read_record_full(self, seq: int) -> tuple[str, Edit, int]:
        with np.load(self._journal_path(seq), allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta["kind"] in ("undo", "redo"):
                _, edit = self._read_record(meta["target"])
                return meta["kind"], edit, meta["target"]
            return meta["kind"], _edit_from_npz(meta, data), seq


class _OffsetSink:
    """Saves a window session's edits at their place in the slide."""

    def __init__(self, store: AnnotationStore, origin_yx: tuple[int, int]) -> None:
        self.store, self.origin_yx = store, origin_yx

    def record(self, kind: str, edit: Edit) -> None:
        self.store.record(kind, _shift_edit(edit, *self.origin_yx) if kind == "do" else edit)


def _shift_side(value: Any, dy: int, dx: int, shape_yx: tuple[int, int] | None = None) -> Any:
    """A proposal / outline moved by (dy, dx); None when ``shape_yx`` is given and it leaves it."""
    if value is None:
        return None
    mask = value.proposal if isinstance(value, PrelabelRecord) else value
    y0, x0, y1, x1 = mask.bbox_yx
    box = (y0 + dy, x0 + dx, y1 + dy, x1 + dx)
    if shape_yx is not None and (box[0] < 0 or box[1] < 0 or box[2] > shape_yx[0] or box[3] > shape_yx[1]):
        return None
    moved = CroppedMask(box, mask.mask)
    return PrelabelRecord(moved, value.source, value.score) if isinstance(value, PrelabelRecord) else moved


def _shift_edit(edit: Edit, dy: int, dx: int) -> Edit:
    """The same edit in slide coordinates (window origin (dy, dx) added)."""
    region = (
        None
        if edit.region_yx is None
        else (edit.region_yx[0] + dy, edit.region_yx[1] + dx, edit.region_yx[2] + dy, edit.region_yx[3] + dx)
    )

    def side(values: dict[int, Any]) -> dict[int, Any]:
        return {i: _shift_side(v, dy, dx) for i, v in values.items()}

    return Edit(
        edit.op,
        edit.ids,
        region,
        edit.labels_before,
        edit.labels_after,
        edit.rows_before,
        edit.rows_after,
        side(edit.prelabels_before),
        side(edit.prelabels_after),
        side(edit.amodal_before),
        side(edit.amodal_after),
        edit.next_id,
    )


def _acquire_lock(lock: Path) -> str:
    """Take the lock file; return '' when taken, else a message saying who holds it."""
    info = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text())
            except (OSError, ValueError):
                holder = {}
            if holder.get("host") == info["host"] and not _alive(int(holder.get("pid", -1))):
                lock.unlink(missing_ok=True)  # a crashed session's lock
                continue
            return (
                f"{lock.parent.parent} is being written by process {holder.get('pid')} on "
                f"{holder.get('host')}; opened read-only"
            )
        with os.fdopen(fd, "w") as handle:
            json.dump(info, handle)
        return ""
    return f"could not take the lock {lock}; opened read-only"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _table_json(table: pd.DataFrame) -> str:
    frame = table.reset_index()
    rows = [[json_scalar(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    return json.dumps({"columns": list(frame.columns), "rows": rows})


def _rows_json(rows: dict[int, dict[str, Any] | None]) -> dict[str, Any]:
    return {str(i): None if r is None else {k: json_scalar(v) for k, v in r.items()} for i, r in rows.items()}


def _rows_from_json(rows: dict[str, Any]) -> dict[int, dict[str, Any] | None]:
    out: dict[int, dict[str, Any] | None] = {}
    for key, row in rows.items():
        if row is not None:
            row = {
                k: (np.nan if v is None and k in ("occluded_fraction", "prelabel_iou") else v) for k, v in row.items()
            }
        out[int(key)] = row
    return out


def _npz(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, meta=np.array(json.dumps(meta)), **arrays)
    return buffer.getvalue()


def _marker_npz(kind: str, target: int) -> bytes:
    return _npz({}, {"kind": kind, "target": target})


def _side_npz(kind: str, value: Any) -> bytes:
    mask = value.proposal if isinstance(value, PrelabelRecord) else value
    meta: dict[str, Any] = {"bbox": list(mask.bbox_yx)}
    if isinstance(value, PrelabelRecord):
        meta.update(source=value.source, score=json_scalar(value.score))
    return _npz({"mask": mask.mask}, meta)


def _load_side(path: Path, kind: str) -> Any:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        mask = CroppedMask(tuple(meta["bbox"]), data["mask"].astype(bool))
    if kind == "prelabel":
        score = meta.get("score")
        return PrelabelRecord(mask, meta["source"], float("nan") if score is None else float(score))
    return mask


def _edit_to_npz(edit: Edit, kind: str) -> bytes:
    arrays: dict[str, np.ndarray] = {}
    if edit.region_yx is not None:
        arrays["labels_before"] = edit.labels_before
        arrays["labels_after"] = edit.labels_after
    side: dict[str, Any] = {}
    for name in ("prelabels_before", "prelabels_after", "amodal_before", "amodal_after"):
        entries = {}
        for instance_id, value in getattr(edit, name).items():
            if value is None:
                entries[str(instance_id)] = None
                continue
            mask = value.proposal if isinstance(value, PrelabelRecord) else value
            key = f"{name}_{instance_id}"
            arrays[key] = mask.mask
            entry: dict[str, Any] = {"bbox": list(mask.bbox_yx), "key": key}
            if isinstance(value, PrelabelRecord):
                entry.update(source=value.source, score=json_scalar(value.score))
            entries[str(instance_id)] = entry
        side[name] = entries
    meta = {
        "kind": kind,
        "op": edit.op,
        "ids": list(edit.ids),
        "region": None if edit.region_yx is None else list(edit.region_yx),
        "rows_before": _rows_json(edit.rows_before),
        "rows_after": _rows_json(edit.rows_after),
        "side": side,
        "next_id": edit.next_id,
    }
    return _npz(arrays, meta)


def _edit_from_npz(meta: dict[str, Any], data: Any) -> Edit:
    side: dict[str, dict[int, Any]] = {}
    for name, entries in meta["side"].items():
        side[name] = {}
        for key, entry in entries.items():
            if entry is None:
                side[name][int(key)] = None
                continue
            mask = CroppedMask(tuple(entry["bbox"]), data[entry["key"]].astype(bool))
            if "source" in entry:
                score = entry.get("score")
                side[name][int(key)] = PrelabelRecord(
                    mask, entry["source"], float("nan") if score is None else float(score)
                )
            else:
                side[name][int(key)] = mask
    region = meta["region"]
    return Edit(
        meta["op"],
        tuple(meta["ids"]),
        None if region is None else tuple(region),
        data["labels_before"] if region is not None else None,
        data["labels_after"] if region is not None else None,
        _rows_from_json(meta["rows_before"]),
        _rows_from_json(meta["rows_after"]),
        side["prelabels_before"],
        side["prelabels_after"],
        side["amodal_before"],
        side["amodal_after"],
        int(meta["next_id"]),
    )
