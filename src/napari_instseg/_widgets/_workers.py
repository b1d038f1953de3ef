"""Running slow work off the UI thread: napari thread workers, or inline for debugging.

``NAPARI_INSTSEG_NOTHREADS=1`` runs everything synchronously (tracebacks in place, tests
without an event loop).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

__all__ = ["SingleSlot", "nothreads", "run_worker"]


def nothreads() -> bool:
    """True when ``NAPARI_INSTSEG_NOTHREADS`` asks for synchronous execution."""
    return os.environ.get("NAPARI_INSTSEG_NOTHREADS", "").lower() in ("1", "true", "yes")


def run_worker(
    func: Callable[..., Any],
    *args: Any,
    on_returned: Callable[[Any], None],
    on_error: Callable[[Exception], None],
    progress: str | None = None,
) -> Any:
    """Run ``func(*args)`` in a napari thread worker (with an indeterminate progress bar when
    ``progress`` names the task), then call ``on_returned`` or ``on_error`` on the UI thread.

    Returns the started worker, or None when run synchronously.
    """
    if nothreads():
        try:
            result = func(*args)
        except Exception as exc:  # handed to the widget's error handler, as a worker would
            on_error(exc)
            return None
        on_returned(result)
        return None
    from napari.qt.threading import create_worker

    ensure_worker_stack()
    kwargs: dict[str, Any] = {"_start_thread": False}
    if progress:
        kwargs["_progress"] = {"total": 0, "desc": progress}
    worker = create_worker(func, *args, **kwargs)
    worker.returned.connect(on_returned)
    worker.errored.connect(on_error)
    worker.start()
    return worker


WORKER_STACK_BYTES = 16 * 1024 * 1024


def ensure_worker_stack() -> None:
    """Give pool threads a 16 MiB stack: importing torch / triton in a worker thread with
    Qt's default stack overflows it (a segmentation fault on first SAM 2 use)."""
    from qtpy.QtCore import QThreadPool

    pool = QThreadPool.globalInstance()
    if pool is None:  # Qt returns None only while it shuts down: nothing to configure
        return
    if pool.stackSize() < WORKER_STACK_BYTES:
        pool.setStackSize(WORKER_STACK_BYTES)


class SingleSlot:
    """At most one job running and one waiting: a newer request replaces the waiting one.

    Used for per-click decoding: while a prediction runs, only the latest prompt is kept,
    and it runs as soon as the current one returns.
    """

    def __init__(self) -> None:
        self.running: Any = None
        self._pending: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None = None
        self.superseded = 0

    @property
    def busy(self) -> bool:
        """True while a job runs."""
        return self.running is not None

    def submit(
        self,
        func: Callable[..., Any],
        *args: Any,
        on_returned: Callable[[Any], None],
        on_error: Callable[[Exception], None],
    ) -> None:
        """Run now if idle, else keep as the one pending job (dropping an older pending one)."""
        job = (func, args, {"on_returned": on_returned, "on_error": on_error})
        if self.running is not None:
            if self._pending is not None:
                self.superseded += 1
            self._pending = job
            return
        self._start(job)

    def _start(self, job: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]) -> None:
        func, args, callbacks = job

        def finish(handler: Callable[[Any], None]) -> Callable[[Any], None]:
            def done(value: Any) -> None:
                self.running = None
                try:
                    handler(value)
                finally:
                    if self._pending is not None:
                        pending, self._pending = self._pending, None
                        self._start(pending)

            return done

        self.running = True
        worker = run_worker(
            func, *args, on_returned=finish(callbacks["on_returned"]), on_error=finish(callbacks["on_error"])
        )
        if worker is not None and self.running is True:
            self.running = worker
