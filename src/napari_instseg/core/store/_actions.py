"""Readers in other processes never see half an action.

One action is saved in steps (journal record, label chunks, then rows and chunk checksums in
one transaction; see :mod:`napari_instseg.core.store._store`). A crash between them is
repaired on the next open, but a *reader* in another process that reads while the writer is
between two steps would see new label chunks beside old rows (a labelled instance without a
row) or a chunk beside its old checksum, and report damage that is not there.

So the writer holds an exclusive ``flock`` on ``instseg/actions.lock`` while it saves an
action (and while it completes crashed ones), and a read-only store holds a shared one while
it reads labels, rows and side records together. The writer waits for readers only for as
long as one read takes, and readers for one action. The writer's own reads need no lock (it
is the only writer, and its threads are serialised by the store's guard).

Where the file system offers no ``flock``, or a read-only store cannot open the file (an old
store on read-only media), reading goes on without it, as before.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["ACTIONS_LOCK_NAME", "ActionLock"]

ACTIONS_LOCK_NAME = "actions.lock"


class ActionLock:
    """The store's action lock, seen from one open store.

    Parameters
    ----------
    path : Path
        ``STORE/instseg/actions.lock``.
    writer : bool
        True for the store that holds the writer lock (it creates the file when missing).
    """

    def __init__(self, path: Path, *, writer: bool) -> None:
        self.path = path
        self.writer = writer
        self._fd: int | None = None
        self._opened = False
        self._depth = 0
        self._mutex = threading.RLock()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock (exclusive for the writer, shared for a reader); re-entrant."""
        with self._mutex:
            fd = self._open()
            if fd is not None and self._depth == 0:
                fd = fd if self._flock(fd, exclusive=self.writer) else None
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    self._unlock(self._fd)

    def close(self) -> None:
        """Close the file (idempotent)."""
        with self._mutex:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _open(self) -> int | None:
        if not self._opened:
            self._opened = True
            flags = (os.O_RDWR | os.O_CREAT) if self.writer else os.O_RDONLY
            try:
                self._fd = os.open(self.path, flags, 0o644)
            except OSError:
                self._fd = None
        return self._fd

    @staticmethod
    def _flock(fd: int, *, exclusive: bool) -> bool:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        except (ImportError, OSError):  # no flock here: read as before
            return False
        return True

    @staticmethod
    def _unlock(fd: int) -> None:
        import fcntl

        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
