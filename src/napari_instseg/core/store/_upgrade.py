"""Automatic upgrade of version-1 stores (``instseg/table.json``, ``state.json``,
``side/*.npz``, ``journal/*.npz``) to version 2, run by :meth:`AnnotationStore.open`.

Steps, each safe to interrupt:

1. The version-1 files are copied to ``STORE.zarr/instseg-v1-backup/``.
2. The SQLite database is built beside them as ``store.sqlite.upgrading``: rows (boxes from
   a scan of the labels, tile by tile), proposals and amodal masks, every journal record
   (payloads copied byte for byte; records newer than ``state.json`` become ``pending`` and
   are completed by the usual recovery), the undo / redo stacks, and the chunk checksums.
3. It is renamed to ``store.sqlite``, then ``zarr.json`` says version 2 (atomic write).
4. The version-1 files, then the backup, are removed.

Until step 3 ends the store is still a complete version-1 store (its files are only read),
so an interrupted upgrade simply runs again. After it, leftovers are cleared on open.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_instseg.core.instances import validate_table
from napari_instseg.core.store._base import STORE_VERSION, StoreError, write_attrs
from napari_instseg.core.store._codec import crc32, decode_record_meta
from napari_instseg.core.store._db import DB_NAME, Database

__all__ = ["V1_FILES", "finish_upgrade", "upgrade_v1"]

V1_FILES = ("table.json", "state.json", "side", "journal")
BACKUP = "instseg-v1-backup"
_TILE = 4096


def upgrade_v1(path: Path) -> None:
    """Upgrade the version-1 store at ``path`` in place (the caller holds its lock).

    Raises
    ------
    StoreError
        When a version-1 file is missing or damaged (the store is left as it was, and the
        message names the file).
    """
    inst = path / "instseg"
    _backup(path)
    tmp = inst / f"{DB_NAME}.upgrading"
    for leftover in (tmp, inst / DB_NAME):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{leftover}{suffix}").unlink(missing_ok=True)
    try:
        _build_db(path, tmp)
    except StoreError:
        raise
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise StoreError(
            f"{path}: upgrading this version-1 store failed ({exc!r}); it is unchanged (a copy of its files is in "
            f"{path / BACKUP}). Run `napari-instseg store check {path}`."
        ) from exc
    tmp.rename(inst / DB_NAME)
    write_attrs(path, version=STORE_VERSION)
    finish_upgrade(path)


def finish_upgrade(path: Path) -> None:
    """Remove the version-1 files and the backup of an upgraded store."""
    inst = path / "instseg"
    for name in V1_FILES:
        target = inst / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    shutil.rmtree(path / BACKUP, ignore_errors=True)


def _backup(path: Path) -> None:
    backup = path / BACKUP
    if backup.exists():
        shutil.rmtree(backup)
    partial = path / f"{BACKUP}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    for name in V1_FILES:
        source = path / "instseg" / name
        if source.is_dir():
            shutil.copytree(source, partial / name)
        elif source.is_file():
            shutil.copy2(source, partial / name)
    partial.rename(backup)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise StoreError(f"{path} is missing: this version-1 store cannot be upgraded as it is.") from None
    except ValueError as exc:
        raise StoreError(f"{path} is not valid JSON ({exc}): this version-1 store cannot be upgraded.") from exc


def _build_db(path: Path, target: Path) -> None:
    import zarr

    from napari_instseg.core.store._build import insert_rows, record_chunks

    inst = path / "instseg"
    state = _read_json(inst / "state.json")
    records = _read_json(inst / "table.json")
    frame = pd.DataFrame.from_records(records["rows"], columns=records["columns"])
    frame = frame.set_index("id") if len(frame) else frame.set_index(pd.Index([], name="id"))
    table = validate_table(frame, source=f"{inst / 'table.json'}")
    labels = zarr.open_group(str(path), mode="r")["labels"]
    boxes = scan_boxes(labels)
    db = Database.create(target)
    try:
        with db.transaction():
            n_rows = insert_rows(db, table, boxes)
            counts = _copy_side(db, inst / "side")
            _copy_journal(db, inst / "journal", state)
            record_chunks(db, labels, path)
            next_id = max(int(state["next_id"]), int(table.index.max()) + 1 if len(table) else 1)
            db.set_meta(
                version=STORE_VERSION,
                next_id=next_id,
                seq=int(state["seq"]),
                n_rows=n_rows,
                n_prelabel=counts["prelabel"],
                n_amodal=counts["amodal"],
                created_empty=False,
                upgraded_from=1,
            )
    finally:
        db.close()


def scan_boxes(labels: Any) -> dict[int, tuple[int, int, int, int]]:
    """Boxes of every id, reading the labels one tile at a time."""
    from napari_instseg.core.store._geometry import label_boxes

    height, width = labels.shape
    boxes: dict[int, tuple[int, int, int, int]] = {}
    for y0 in range(0, height, _TILE):
        for x0 in range(0, width, _TILE):
            tile = np.asarray(labels[y0 : y0 + _TILE, x0 : x0 + _TILE], dtype=np.uint32)
            if not tile.any():
                continue
            for instance_id, box in label_boxes(tile, (y0, x0)).items():
                old = boxes.get(instance_id)
                boxes[instance_id] = (
                    box
                    if old is None
                    else (min(old[0], box[0]), min(old[1], box[1]), max(old[2], box[2]), max(old[3], box[3]))
                )
    return boxes


def _copy_side(db: Database, folder: Path) -> dict[str, int]:
    from napari_instseg.core.store._codec import side_value

    counts = {"prelabel": 0, "amodal": 0}
    for file in sorted(folder.glob("*_*.npz")) if folder.is_dir() else []:
        kind, _, number = file.stem.partition("_")
        if kind not in counts:
            continue
        try:
            with np.load(file, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                mask = data["mask"].astype(bool)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise StoreError(f"{file} is damaged ({exc!r}); the version-1 store cannot be upgraded as it is.") from exc
        bbox = tuple(int(v) for v in meta["bbox"])
        value = side_value(kind, bbox, mask, meta.get("source"), meta.get("score"))  # type: ignore[arg-type]
        counts[kind] += db.put_side(kind, int(number), value)
    return counts


def _copy_journal(db: Database, folder: Path, state: dict[str, Any]) -> int:
    """Copy every record; returns the last sequence number found."""
    undo, redo = set(state.get("undo", [])), set(state.get("redo", []))
    applied = int(state["seq"])
    last = 0
    files = sorted(folder.glob("*.npz")) if folder.is_dir() else []
    for file in files:
        seq = int(file.stem)
        payload = file.read_bytes()
        try:
            meta = decode_record_meta(payload)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            if seq <= applied:  # history only: the labels and table already hold it
                continue
            raise StoreError(
                f"{file} is damaged ({exc!r}); it is an action a crash interrupted. The version-1 store cannot be "
                "upgraded as it is."
            ) from exc
        kind = str(meta["kind"])
        target = meta.get("target")
        stack = "undo" if seq in undo else "redo" if seq in redo else None
        body = payload if kind == "do" else None
        crc = crc32(body) if body is not None else crc32(f"{kind}:{target}".encode())
        db.conn.execute(
            "INSERT INTO journal (seq, kind, target, op, payload, crc, state, stack) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, kind, target, meta.get("op"), body, crc, "applied" if seq <= applied else "pending", stack),
        )
        last = max(last, seq)
    return last
