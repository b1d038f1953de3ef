"""Creating and opening a store: the hidden build folder renamed into place, the writer lock,
upgrades, and actions a crash interrupted completed before the store is used.

(:class:`AnnotationStore` is :class:`napari_instseg.core.store.AnnotationStore`.)
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

import napari_instseg.core.store._lock as lock_file
from napari_instseg.core.labels import as_label_image
from napari_instseg.core.protocol import AnnotationProtocol
from napari_instseg.core.store._base import STORE_FORMAT, STORE_VERSION, StoreError, is_store, read_version
from napari_instseg.core.store._db import DB_NAME

if TYPE_CHECKING:
    from napari_instseg.core.store._store import AnnotationStore

__all__ = ["create_store", "lock_path", "needs_recovery", "open_store"]


def create_store(
    cls: type[AnnotationStore],
    path: str | os.PathLike[str],
    labels_yx: Any,
    protocol: AnnotationProtocol | None = None,
    image: dict[str, Any] | None = None,
    table: pd.DataFrame | None = None,
) -> AnnotationStore:
    """See :meth:`AnnotationStore.create`."""
    from napari_instseg.core.store._build import build_store, clean_stale_builds

    target = Path(path)
    if target.exists():
        raise StoreError(f"{target} already exists; open it with AnnotationStore.open().")
    labels = None if isinstance(labels_yx, tuple) else as_label_image(labels_yx)
    shape = tuple(int(v) for v in labels_yx) if labels is None else labels.shape
    clean_stale_builds(target)
    tmp = target.with_name(f".{target.name}.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        build_store(tmp, (int(shape[0]), int(shape[1])), labels, protocol or AnnotationProtocol.default(), image, table)
        if target.exists():
            raise StoreError(f"{target} was created by someone else meanwhile; open it with AnnotationStore.open().")
        os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return cls.open(target)


def open_store(cls: type[AnnotationStore], path: str | os.PathLike[str], *, read_only: bool = False) -> AnnotationStore:
    """See :meth:`AnnotationStore.open`."""
    target = Path(path)
    if not is_store(target):
        raise StoreError(f"{target} is not a napari-instseg annotation store (no {STORE_FORMAT} zarr.json).")
    version = read_version(target)
    if version > STORE_VERSION:
        raise StoreError(f"{target} is a version-{version} store; this napari-instseg reads up to {STORE_VERSION}.")
    needs_writer = not read_only or version < STORE_VERSION or needs_recovery(target)
    try:
        lock, message = lock_file.acquire(lock_path(target)) if needs_writer else (None, "")
    except OSError as exc:  # read-only media: no lock file can be made
        if not read_only:
            raise StoreError(f"{target}: cannot take the writer lock ({exc}); open it with read_only=True.") from exc
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


def needs_recovery(store: Path) -> bool:
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


def lock_path(store: Path) -> Path:
    """The writer lock file of a store."""
    return store / "instseg" / "lock"
