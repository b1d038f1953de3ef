"""Atomic file writing: write to a temporary file beside the target, then rename.

A crash or an exception while writing never leaves a half-written file at the target path,
and an existing file there is kept until the new one is complete.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once: os.umask() is process-wide and racy in threads


def _publish(tmp_name: str, target: Path) -> None:
    """Give the temporary file the permissions a new file would get, then rename it."""
    os.chmod(tmp_name, 0o666 & ~_UMASK)
    os.replace(tmp_name, target)


def give_default_mode(folder: str | os.PathLike[str]) -> None:
    """Give a folder made by :func:`tempfile.mkdtemp` (always mode 0700, private to its
    creator) the mode ``mkdir`` would have given it under the umask, before it is renamed
    into place: a project folder is shared by several people."""
    os.chmod(folder, 0o777 & ~_UMASK)


__all__ = ["atomic_path", "atomic_write", "atomic_write_bytes", "atomic_write_text", "give_default_mode"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a temporary binary file that replaces ``path`` when the block ends cleanly.

    Parameters
    ----------
    path : path-like
        Final location. Its parent folder must exist.

    Yields
    ------
    BinaryIO
        A file open for binary writing. On an exception the temporary file is removed and
        ``path`` is left as it was.
    """
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        _publish(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` that replaces it when the block ends cleanly.

    For writers that want a file name rather than a handle (tifffile, imageio).
    """
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp_name)
        _publish(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    with atomic_write(path) as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (temporary file, fsync, rename)."""
    atomic_write_bytes(path, text.encode("utf-8"))
