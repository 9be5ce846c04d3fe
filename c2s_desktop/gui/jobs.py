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
