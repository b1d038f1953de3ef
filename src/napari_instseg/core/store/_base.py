"""Names shared by the store's modules: the format, its error, chunk checksums."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from napari_instseg.core._io import atomic_write_text
from napari_instseg.core.errors import InstsegError
from napari_instseg.core.store._codec import crc32

__all__ = ["CHUNK_PX", "STORE_FORMAT", "STORE_VERSION", "StoreError", "chunk_crc", "is_store", "read_version"]

STORE_FORMAT = "napari-instseg-store"
STORE_VERSION = 2
CHUNK_PX = 256


class StoreError(InstsegError, ValueError):
    """A store is missing, of another format, damaged, read-only, or could not save."""


def is_store(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a napari-instseg annotation store."""
    try:
        return _attrs(Path(path)).get("format") == STORE_FORMAT
    except (OSError, ValueError):
        return False


def _attrs(path: Path) -> dict[str, Any]:
    meta = path / "zarr.json"
    if not meta.is_file():
        return {}
    data = json.loads(meta.read_text())
    attrs = data.get("attributes", {}) if isinstance(data, dict) else {}
    return attrs if isinstance(attrs, dict) else {}


def read_version(path: Path) -> int:
    """The store format version written in ``zarr.json``."""
    try:
        return int(_attrs(path).get("version", 1))
    except (OSError, ValueError, TypeError) as exc:
        raise StoreError(f"{path}: zarr.json is unreadable ({exc}).") from exc


def write_attrs(path: Path, **values: Any) -> None:
    """Update group attributes in ``zarr.json`` atomically."""
    data = json.loads((path / "zarr.json").read_text())
    data.setdefault("attributes", {}).update(values)
    atomic_write_text(path / "zarr.json", json.dumps(data, indent=2))


def chunk_file(labels: Any, store: Path, cy: int, cx: int) -> Path:
    """The file of label chunk (cy, cx)."""
    key: str = labels.metadata.chunk_key_encoding.encode_chunk_key((cy, cx))
    return store / "labels" / key


def chunk_crc(labels: Any, store: Path, cy: int, cx: int) -> int | None:
    """CRC-32 of a label chunk's file; None when there is no file (all background)."""
    try:
        return crc32(chunk_file(labels, store, cy, cx).read_bytes())
    except FileNotFoundError:
        return None
