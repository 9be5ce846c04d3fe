"""Run core calls off the GUI thread: a QObject worker on its own QThread.

The core call gets ``progress`` and ``cancel`` keyword arguments when it accepts them; results
and errors come back as signals on the GUI thread. References are dropped only after the thread
has finished (a running QThread that is garbage-collected aborts the process).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

# PySide6's import hook can crash (SIGSEGV) when a worker thread is the first to import a
# module while the GUI thread paints; core.dataset imports anndata lazily, so import it here.
try:
    import anndata.io  # noqa: F401
except ImportError:  # anndata < 0.11
    import anndata.experimental  # noqa: F401


class _Worker(QObject):
    progress = Signal(float, str)
    succeeded = Signal(object)
    failed = Signal(object)

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        super().__init__()
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.cancel = threading.Event()

    @Slot()
    def run(self) -> None:
        kwargs = dict(self.kwargs)
        params = inspect.signature(self.fn).parameters
        if "progress" in params:
            kwargs["progress"] = lambda f, m: self.progress.emit(float(f), str(m))
        if "cancel" in params:
            kwargs["cancel"] = self.cancel
        try:
            result = self.fn(*self.args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the GUI
            self.failed.emit(exc)
        else:
            self.succeeded.emit(result)


class Job(QObject):
    """One background call. Connect to ``succeeded``/``failed``/``progress``, then ``start()``."""

    progress = Signal(float, str)
    succeeded = Signal(object)
    failed = Signal(object)
    done = Signal()

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.thread = QThread()
        self.worker = _Worker(fn, args, kwargs)
        self.worker.moveToThread(self.thread)
        self.thread.started.connect(self.worker.run)
        self.worker.progress.connect(self.progress)
        self.worker.succeeded.connect(self._on_success)
        self.worker.failed.connect(self._on_failure)
        self.thread.finished.connect(self.done)

    def start(self) -> None:
        self.thread.start()

    def cancel(self) -> None:
        self.worker.cancel.set()

    def is_running(self) -> bool:
        return self.thread.isRunning()

    def _on_success(self, result: object) -> None:
        self.thread.quit()
        self.succeeded.emit(result)

    def _on_failure(self, exc: object) -> None:
        self.thread.quit()
        self.failed.emit(exc)


class JobRunner(QObject):
    """Background jobs by slot: one current job per slot, older ones cancelled and ignored.

    A superseded or cancelled job's result goes to its ``discard`` callback (e.g. to close a
    dataset opened too late); its Job object is kept until its thread has finished.
    """

    progress = Signal(float, str)
    busy_changed = Signal(bool)
    idle = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.current: dict[str, Job] = {}
        self._alive: list[Job] = []

    def start(
        self,
        slot: str,
        fn: Callable[..., Any],
        *args: Any,
        on_success: Callable[[Any], None],
        on_failure: Callable[[BaseException], None],
        discard: Callable[[Any], None] | None = None,
        **kwargs: Any,
    ) -> Job:
        """Run ``fn(*args, **kwargs)`` in the background as the current job of ``slot``."""
        self.cancel(slot)
        job = Job(fn, *args, **kwargs)
        was_busy = self.is_busy()
        self.current[slot] = job
        self._alive.append(job)

        def live() -> bool:
            return self.current.get(slot) is job and not job.worker.cancel.is_set()

        def succeeded(result: object) -> None:
            if live():
                on_success(result)
            elif discard is not None:
                discard(result)

        job.succeeded.connect(succeeded)
        job.failed.connect(lambda exc: on_failure(exc) if live() else None)
        job.progress.connect(lambda f, m: self.progress.emit(f, m) if live() else None)
        job.done.connect(lambda: self._finished(slot, job))
        job.start()
        if not was_busy:
            self.busy_changed.emit(True)
        return job

    def cancel(self, slot: str | None = None) -> None:
        """Cancel the job of ``slot`` (every job when None); its result will be discarded."""
        for name, job in list(self.current.items()):
            if slot is None or name == slot:
                job.cancel()

    def is_busy(self, slot: str | None = None) -> bool:
        if slot is not None:
            return slot in self.current and self.current[slot].is_running()
        return any(job.is_running() for job in self._alive)

    def wait(self, timeout_ms: int = 10_000) -> None:
        """Block until every thread has stopped (for shutdown)."""
        for job in list(self._alive):
            job.thread.quit()
            job.thread.wait(timeout_ms)

    def _finished(self, slot: str, job: Job) -> None:
        job.thread.wait()
        if job in self._alive:
            self._alive.remove(job)
        if self.current.get(slot) is job:
            del self.current[slot]
        if not self._alive:
            self.busy_changed.emit(False)
            self.idle.emit()
