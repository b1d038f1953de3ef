"""Running slow work off the UI thread: napari thread workers, or inline for debugging.

``NAPARI_INSTSEG_NOTHREADS=1`` runs everything synchronously (tracebacks in place, tests
without an event loop).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from napari_instseg.core.errors import InstsegError

__all__ = ["Cancelled", "ProgressRun", "SingleSlot", "nothreads", "run_worker"]


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
    kwargs: dict[str, Any] = {"_start_thread": False, "_connect": {"returned": on_returned, "errored": on_error}}
    if progress:
        kwargs["_progress"] = {"total": 0, "desc": progress}
    worker = create_worker(func, *args, **kwargs)  # errored handled: not re-raised in Qt's loop too
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


class Cancelled(InstsegError):
    """The person cancelled a batch run; raised in the worker at the core's next progress report."""


class ProgressRun:
    """One cancellable batch run with a determinate progress bar, in the panel and in napari's
    activity dock (``napari.utils.progress``).

    ``func(*args, progress=report, **kwargs)`` runs in a napari thread worker; the core calls
    ``report(done, total[, what])`` between images / tiles. Each report moves both bars (on
    the UI thread, through a queued Qt signal) and, once Cancel was pressed, raises
    :class:`Cancelled` there, so the core stops between two units of work and its ``finally``
    blocks run (a store is closed with every finished tile saved).

    Parameters
    ----------
    bar : magicgui ProgressBar
        The panel's bar (shown while a run is on).
    cancel_button : magicgui PushButton
        Enabled while a run is on; pressing it cancels.
    desc : str
        What the run does (napari's activity dock shows it).
    """

    def __init__(self, bar: Any, cancel_button: Any, desc: str) -> None:
        self.bar, self.cancel_button, self.desc = bar, cancel_button, desc
        self.worker: Any = None
        self.pbar: Any = None
        self.reports: list[tuple[int, int, str]] = []
        self._cancel = threading.Event()
        self._relay: Any = None
        self._running = False
        self.bar.visible = False
        self.cancel_button.enabled = False
        self.cancel_button.changed.connect(self.cancel)

    @property
    def running(self) -> bool:
        """True from :meth:`start` until the run returned, failed or was cancelled."""
        return self._running

    def cancel(self, *_: Any) -> None:
        """Ask the run to stop at the core's next progress report."""
        if self._running:
            self._cancel.set()
            self.cancel_button.enabled = False

    def start(
        self,
        func: Callable[..., Any],
        *args: Any,
        on_returned: Callable[[Any], None],
        on_error: Callable[[Exception], None],
        on_cancelled: Callable[[Cancelled], None],
        **kwargs: Any,
    ) -> Any:
        """Run ``func(*args, progress=..., **kwargs)``; returns the worker (None when inline)."""
        from napari.utils import progress

        self._cancel.clear()
        self._running, self.reports = True, []
        self.bar.min, self.bar.max, self.bar.value = 0, 1, 0
        self.bar.visible, self.cancel_button.enabled = True, True
        self.pbar = progress(total=0, desc=self.desc)

        def finish(handler: Callable[[Any], None]) -> Callable[[Any], None]:
            def done(value: Any) -> None:
                self._end()
                handler(value)

            return done

        def failed(exc: Exception) -> None:
            self._end()
            (on_cancelled if isinstance(exc, Cancelled) else on_error)(exc)  # type: ignore[arg-type]

        if nothreads():  # inline: the bars move as the core reports; Cancel is seen at the next report
            return run_worker(
                lambda: func(*args, progress=self._step, **kwargs), on_returned=finish(on_returned), on_error=failed
            )
        self._relay = _relay(self._step)
        emit = self._relay.step.emit

        def report(done: int, total: int, what: str = "") -> None:  # the worker thread
            if self._cancel.is_set():
                raise Cancelled(f"{self.desc}: cancelled after {done} of {total}")
            emit(int(done), int(total), str(what))

        from napari.qt.threading import create_worker

        ensure_worker_stack()
        connect = {"returned": finish(on_returned), "errored": failed}
        self.worker = create_worker(func, *args, progress=report, _start_thread=False, _connect=connect, **kwargs)
        self.worker.start()
        return self.worker

    def _step(self, done: int, total: int, what: str = "") -> None:
        """Move both bars (UI thread)."""
        if not self._running:
            return
        if nothreads() and self._cancel.is_set():
            raise Cancelled(f"{self.desc}: cancelled after {done} of {total}")
        self.reports.append((done, total, what))
        self.bar.max, self.bar.value = max(int(total), 1), min(int(done), max(int(total), 1))
        self.bar.label = f"{done} / {total}" + (f" {what}" if what else "")
        pbar = self.pbar  # updating it may process events (and end the run)
        if pbar is not None:
            if what:
                pbar.set_description(f"{self.desc}: {what}")
            if pbar.total != total:
                pbar.total = total
            pbar.update(done - pbar.n)

    def _end(self) -> None:
        self._running = False
        self.worker = None
        self.cancel_button.enabled = False
        self.bar.visible = False
        if self.pbar is not None:
            self.pbar.close()
            self.pbar = None


def _relay(slot: Callable[[int, int, str], None]) -> Any:
    """A QObject living on the UI thread whose ``step`` signal, emitted from a worker thread,
    calls ``slot`` on the UI thread (Qt's queued connection)."""
    from qtpy.QtCore import QObject, Signal  # type: ignore[attr-defined]

    class Relay(QObject):
        step = Signal(int, int, str)

    relay = Relay()
    relay.step.connect(slot)
    return relay
