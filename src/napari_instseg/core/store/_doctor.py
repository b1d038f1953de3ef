"""The store doctor: integrity checks (``napari-instseg store check``) and repair
(``napari-instseg store repair``).

The check reads everything once: the SQLite file (``PRAGMA integrity_check``), the state,
every row, side record and journal record against its CRC, every label chunk file against
the CRC the store recorded when it wrote it, and every labelled id against the table.

The repair first copies what it will change into ``STORE.zarr/repair-backup-<time>/`` (the
database and the label chunks it rewrites), then: sets damaged journal records aside
(``void``); rebuilds missing or damaged label chunks by replaying the journal (pixels no
record covers are background when the store was created empty, otherwise they are lost and
counted); restores missing or damaged rows and side records from the journal (default rows
when the journal does not know them); recomputes the state (next id, counts). It never
deletes anything that is not in the backup.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from napari_instseg.core.store._store import AnnotationStore

__all__ = ["StoreReport", "check_store", "quick_problems", "repair_store"]


@dataclass
class StoreReport:
    """What a check found (``problems``) or a repair did (``repaired``, ``lost``)."""

    path: str
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    backup: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def quick_problems(store: AnnotationStore) -> list[str]:
    """Cheap checks run on every open: meta, counts, recorded chunk files present."""
    from napari_instseg.core.store._base import chunk_file

    problems = []
    meta = store._meta
    for key in ("next_id", "n_rows", "n_prelabel", "n_amodal"):
        if not isinstance(meta.get(key), int):
            problems.append(f"the store state has no valid {key!r} ({meta.get(key)!r})")
    conn = store._db.conn
    n_rows = int(conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0])
    if isinstance(meta.get("n_rows"), int) and n_rows != meta["n_rows"]:
        problems.append(f"the instance table has {n_rows} rows where {meta['n_rows']} were saved")
    for kind in ("prelabel", "amodal"):
        n = int(conn.execute("SELECT COUNT(*) FROM side WHERE kind = ?", (kind,)).fetchone()[0])
        expected: Any = meta.get(f"n_{kind}")
        if isinstance(expected, int) and n != expected:
            problems.append(f"{n} {kind} side records where {expected} were saved")
    for cy, cx in conn.execute("SELECT cy, cx FROM chunks WHERE crc IS NOT NULL").fetchall():
        if not chunk_file(store._labels, store.path, cy, cx).is_file():
            problems.append(f"label chunk ({cy}, {cx}) is missing")
    from napari_instseg.core.store._protocol import protocol_problems

    problems += protocol_problems(meta, dict(store._root.attrs).get("protocol"))
    return problems


def check_store(path: str | os.PathLike[str]) -> StoreReport:
    """Check a store thoroughly; the report lists every problem found (none = healthy)."""
    from napari_instseg.core.store._base import StoreError, is_store, read_version

    target = Path(path)
    report = StoreReport(str(target))
    if not is_store(target):
        raise StoreError(f"{target} is not a napari-instseg annotation store.")
    if read_version(target) < 2:
        report.problems.extend(_v1_problems(target))
        return report
    parts = _open_parts(target, report)
    if parts is None:
        return report
    labels, db = parts
    try:
        report.problems.extend(_problems(target, labels, db))
    finally:
        db.close()
    return report


def _v1_problems(path: Path) -> list[str]:
    inst = path / "instseg"
    return [f"version-1 file {name} is missing" for name in ("table.json", "state.json") if not (inst / name).is_file()]


def _open_parts(path: Path, report: StoreReport) -> tuple[Any, Any] | None:
    import zarr

    from napari_instseg.core.store._db import DB_NAME, Database

    try:
        labels = zarr.open_group(str(path), mode="r")["labels"]
    except (KeyError, ValueError, OSError) as exc:
        report.problems.append(f"the labels array is unreadable ({exc!r})")
        return None
    db_path = path / "instseg" / DB_NAME
    if not db_path.is_file():
        report.problems.append(f"{db_path.name} (table, journal, side records) is missing")
        return None
    try:
        db = Database(db_path, read_only=False)
        verdict = db.conn.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        report.problems.append(f"{db_path.name} is not a readable database ({exc})")
        return None
    if verdict != "ok":
        report.problems.append(f"{db_path.name} fails SQLite's integrity check: {verdict}")
    return labels, db


def _problems(path: Path, labels: Any, db: Any) -> list[str]:
    problems = []
    problems += [f"damaged row of instance {i} (checksum)" for i in damaged_rows(db)]
    problems += [f"damaged {k} record of instance {i} (checksum)" for k, i in damaged_side(db)]
    problems += [f"journal record {s} is damaged ({why})" for s, why in damaged_records(db)]
    for (cy, cx), found in bad_chunks(path, labels, db).items():
        problems.append(f"label chunk ({cy}, {cx}) is {'missing' if found is None else 'damaged (checksum)'}")
    row_ids = {int(r[0]) for r in db.conn.execute("SELECT id FROM instances")}
    lost = sorted(label_ids(labels) - row_ids)
    if lost:
        problems.append(f"{len(lost)} labelled instance(s) have no table row (ids {lost[:10]})")
    meta = db.meta()
    for key, sql in (
        ("n_rows", "SELECT COUNT(*) FROM instances"),
        ("n_prelabel", "SELECT COUNT(*) FROM side WHERE kind = 'prelabel'"),
        ("n_amodal", "SELECT COUNT(*) FROM side WHERE kind = 'amodal'"),
    ):
        found = int(db.conn.execute(sql).fetchone()[0])
        if meta.get(key) != found:
            problems.append(f"the state says {key} = {meta.get(key)!r}, the store holds {found}")
    import zarr

    from napari_instseg.core.store._protocol import protocol_problems

    problems += protocol_problems(meta, dict(zarr.open_group(str(path), mode="r").attrs).get("protocol"))
    top = max(row_ids | label_ids(labels) | {0})
    if not isinstance(meta.get("next_id"), int) or meta["next_id"] <= top:
        problems.append(f"the state's next id {meta.get('next_id')!r} is not above the largest id {top}")
    return problems


def damaged_rows(db: Any) -> list[int]:
    from napari_instseg.core.store._codec import ROW_COLUMNS, row_crc

    bad = []
    for record in db.conn.execute(f"SELECT id, {', '.join(ROW_COLUMNS)}, extra, crc FROM instances"):
        if row_crc(record[0], list(record[1:-2]), record[-2]) != record[-1]:
            bad.append(int(record[0]))
    return bad


def damaged_side(db: Any) -> list[tuple[str, int]]:
    from napari_instseg.core.store._db import side_crc

    bad = []
    for kind, i, y0, x0, y1, x1, h, w, source, score, blob, crc in db.conn.execute(
        "SELECT kind, id, y0, x0, y1, x1, h, w, source, score, mask, crc FROM side"
    ):
        if side_crc(kind, i, (y0, x0, y1, x1), (h, w), source, score, blob) != crc:
            bad.append((str(kind), int(i)))
    return bad


def damaged_records(db: Any) -> list[tuple[int, str]]:
    from napari_instseg.core.store._codec import crc32, decode_edit

    bad = []
    for seq, kind, target, payload, crc in db.conn.execute(
        "SELECT seq, kind, target, payload, crc FROM journal WHERE state != 'void' ORDER BY seq"
    ):
        if kind == "do":
            if payload is None or crc32(bytes(payload)) != crc:
                bad.append((int(seq), "checksum"))
                continue
            try:
                decode_edit(bytes(payload))
            except Exception as exc:  # any decoding failure is damage
                bad.append((int(seq), repr(exc)))
        elif crc32(f"{kind}:{target}".encode()) != crc:
            bad.append((int(seq), "checksum"))
    return bad


def bad_chunks(path: Path, labels: Any, db: Any) -> dict[tuple[int, int], int | None]:
    from napari_instseg.core.store._base import chunk_crc

    bad = {}
    for cy, cx, crc in db.conn.execute("SELECT cy, cx, crc FROM chunks").fetchall():
        found = chunk_crc(labels, path, cy, cx)
        if found != crc:
            bad[(int(cy), int(cx))] = found
    return bad


def label_ids(labels: Any, tile: int = 4096) -> set[int]:
    import pandas as pd

    ids: set[int] = set()
    height, width = labels.shape
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            ids.update(int(v) for v in pd.unique(_read_safely(labels, (y0, x0, y0 + tile, x0 + tile)).ravel()))
    ids.discard(0)
    return ids


def _read_safely(labels: Any, region: tuple[int, int, int, int]) -> np.ndarray:
    """A region of the labels; chunks that cannot be decoded read as 0 (reported elsewhere)."""
    from napari_instseg.core.store._geometry import chunk_ranges

    y0, x0, y1, x1 = region[0], region[1], min(region[2], labels.shape[0]), min(region[3], labels.shape[1])
    try:
        return np.asarray(labels[y0:y1, x0:x1])
    except Exception:  # a damaged chunk (the codec's own error type)
        out = np.zeros((y1 - y0, x1 - x0), np.uint32)
        for _, (cy0, cx0, cy1, cx1) in chunk_ranges((y0, x0, y1, x1), tuple(labels.chunks)):
            try:
                out[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] = labels[cy0:cy1, cx0:cx1]
            except Exception:
                continue
        return out


# -- repair ---------------------------------------------------------------------------------------
def repair_store(path: str | os.PathLike[str], *, unlock: bool = False) -> StoreReport:
    """Repair what a check finds (see the module docstring); returns what was done, what
    could not be recovered, and where the backup is.

    Raises
    ------
    StoreError
        When ``path`` is no store, or another process is writing it.
    """
    import napari_instseg.core.store._lock as lock_file
    from napari_instseg.core.store._base import StoreError, is_store, read_version

    target = Path(path)
    if not is_store(target):
        raise StoreError(f"{target} is not a napari-instseg annotation store.")
    report = StoreReport(str(target))
    lock_path = target / "instseg" / "lock"
    if unlock and lock_file.break_lock(lock_path):
        report.repaired.append("removed the exclusive-create lock file of a holder that is gone")
    lock, message = lock_file.acquire(lock_path)
    if lock is None:
        raise StoreError(f"{message}; close it there before repairing.")
    try:
        if read_version(target) < 2:
            report.problems.append("a version-1 store: open it to upgrade it, then repair if needed")
            return report
        report.backup = str(_backup(target))
        _repair(target, report)
    finally:
        lock.release()
    return report


def _backup(path: Path) -> Path:
    from napari_instseg.core.store._db import DB_NAME

    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    backup = path / f"repair-backup-{stamp}"
    backup.mkdir()
    for suffix in ("", "-wal", "-shm"):
        source = path / "instseg" / f"{DB_NAME}{suffix}"
        if source.is_file():
            shutil.copy2(source, backup / source.name)
    return backup


def _repair(path: Path, report: StoreReport) -> None:
    import zarr

    from napari_instseg.core.store._db import DB_NAME, Database

    labels = zarr.open_group(str(path), mode="r+")["labels"]
    db_path = path / "instseg" / DB_NAME
    try:
        db = Database(db_path, read_only=False)
        ok = db.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok" and "next_id" in db.meta()
    except sqlite3.DatabaseError:
        ok = False
    if not ok:
        _rebuild_database(path, labels, report)
        return
    from napari_instseg.core.store._protocol import repair_protocol
    from napari_instseg.core.store._replay import repair_database

    try:
        repair_database(path, labels, db, report)
        done = repair_protocol(zarr.open_group(str(path), mode="r+"), db.meta())
        if done:
            report.repaired.append(done)
    finally:
        db.close()


def _rebuild_database(path: Path, labels: Any, report: StoreReport) -> None:
    """The database is gone or unreadable: a new one from the labels (default rows)."""
    from napari_instseg.core.instances import table_for_ids
    from napari_instseg.core.protocol import AnnotationProtocol
    from napari_instseg.core.store._base import STORE_VERSION
    from napari_instseg.core.store._build import insert_rows, record_chunks
    from napari_instseg.core.store._db import DB_NAME, Database
    from napari_instseg.core.store._upgrade import scan_boxes

    db_path = path / "instseg" / DB_NAME
    for suffix in ("", "-wal", "-shm"):  # copied to the backup first
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    import zarr

    attrs: dict[str, Any] = dict(zarr.open_group(str(path), mode="r").attrs)
    protocol = AnnotationProtocol.from_dict(attrs["protocol"])
    boxes = scan_boxes(labels)
    rows = table_for_ids(sorted(boxes), None, defaults={"category_id": protocol.categories[0].id})
    db = Database.create(db_path)
    try:
        with db.transaction():
            n_rows = insert_rows(db, rows, boxes)
            record_chunks(db, labels, path)
            next_id = max(boxes, default=0) + 1
            db.set_meta(version=STORE_VERSION, next_id=next_id, seq=0, n_rows=n_rows, n_prelabel=0, n_amodal=0)
    finally:
        db.close()
    report.repaired.append(f"rebuilt the database from the labels: {n_rows} instance rows")
    report.lost.append("the table's tags (rows are defaults), the proposals, amodal masks and the undo history")
