"""The writer lock of a store: one writing process at a time, taken atomically.

The lock is ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``instseg/lock``. The kernel grants it to
exactly one open file at a time (two processes racing to open get one writer and one reader)
and drops it when the holder exits, however it exits: a SIGKILL never leaves a stale lock,
and an empty or garbled lock *file* (from a kill while its holder record was being written)
means nothing. The holder record inside the file (pid, host, time) is only read to tell a
second opener who writes the store.

Where the file system offers no ``flock`` (some network mounts), an exclusive-create lock
file (``instseg/lock.excl``, published with ``os.link`` so it is never seen half-written) is
used instead. Its holder may be stale: on the same host a holder whose process is gone is
taken over; a garbled record is taken over (it cannot be ours); a holder on *another host*
cannot be checked from here, so the store opens read-only, naming the host and how to break
the lock (``napari-instseg store repair --unlock``) once that process is known to be gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Lock", "acquire", "break_lock", "holder_of"]


@dataclass
class Lock:
    """A held lock; :meth:`release` it when done."""

    path: Path
    fd: int | None
    excl: bool = False

    def release(self) -> None:
        """Give the lock up (idempotent)."""
        if self.fd is not None:
            import fcntl

            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
        if self.excl:
            holder = holder_of(self.path.with_name("lock.excl"))
            if holder.get("token") == _TOKEN:
                self.path.with_name("lock.excl").unlink(missing_ok=True)
            self.excl = False


_TOKEN = uuid.uuid4().hex  # tells this process's own exclusive-create lock files apart


def _holder_record() -> bytes:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "token": _TOKEN}
    return json.dumps(info).encode()


def holder_of(path: Path) -> dict[str, object]:
    """The holder record in a lock file ({} when absent or unreadable)."""
    try:
        data = json.loads(path.read_bytes() or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _busy_message(store: Path, holder: dict[str, object]) -> str:
    if not holder:
        return f"{store} is being written by another process (no holder record); opened read-only"
    return f"{store} is being written by process {holder.get('pid')} on {holder.get('host')}; opened read-only"


def acquire(path: Path) -> tuple[Lock | None, str]:
    """Take the lock at ``path``: (lock, '') when taken, else (None, who holds it)."""
    import fcntl

    store = path.parent.parent
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None, _busy_message(store, holder_of(path))
    except OSError:  # no flock on this file system: exclusive-create lock file instead
        os.close(fd)
        return _acquire_excl(path)
    os.ftruncate(fd, 0)
    os.pwrite(fd, _holder_record(), 0)
    return Lock(path, fd), ""


def _acquire_excl(path: Path) -> tuple[Lock | None, str]:
    lock = path.with_name("lock.excl")
    store = path.parent.parent
    for _ in range(3):
        tmp = path.with_name(f".lock.{uuid.uuid4().hex}")
        tmp.write_bytes(_holder_record())
        try:
            os.link(tmp, lock)  # atomic: fails when a lock file exists
        except FileExistsError:
            holder = holder_of(lock)
            if _is_stale(holder):
                lock.unlink(missing_ok=True)
                continue
            note = ""
            if holder.get("host") != socket.gethostname():
                note = f" (if it is gone, run: napari-instseg store repair --unlock {store})"
            return None, _busy_message(store, holder) + note
        finally:
            tmp.unlink(missing_ok=True)
        return Lock(path, None, excl=True), ""
    return None, f"could not take the lock of {store}; opened read-only"


def _is_stale(holder: dict[str, object]) -> bool:
    """A garbled record, or a holder on this host whose process is gone."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or not holder.get("host"):
        return True
    return holder.get("host") == socket.gethostname() and not process_alive(pid)


def process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def break_lock(path: Path) -> bool:
    """Remove an exclusive-create lock file (after its holder is known to be gone); True when
    one was removed. A ``flock`` lock needs no breaking: it dies with its holder."""
    lock = path.with_name("lock.excl")
    if lock.exists():
        lock.unlink()
        return True
    return False
