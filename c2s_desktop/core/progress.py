"""Progress reporting and cancellation shared by every long-running core call."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from .errors import Cancelled

ProgressFn = Callable[[float, str], None]
"""``progress(fraction, message)``: fraction in [0, 1] (or < 0 when unknown)."""


class CancelToken(Protocol):
    """Anything with ``is_set()``; a :class:`threading.Event` is one."""

    def is_set(self) -> bool: ...


def no_progress(fraction: float, message: str) -> None:
    """Progress sink that ignores everything."""


def check_cancel(cancel: CancelToken | None) -> None:
    """Raise :class:`Cancelled` if ``cancel`` is set."""
    if cancel is not None and cancel.is_set():
        raise Cancelled()


def new_cancel_token() -> threading.Event:
    """A fresh, unset cancel token."""
    return threading.Event()


class EitherSet:
    """A cancel token set when either of two tokens is (a user's Stop or a job's cancel)."""

    def __init__(self, first: CancelToken, second: CancelToken | None) -> None:
        self.first, self.second = first, second

    def is_set(self) -> bool:
        return self.first.is_set() or (self.second is not None and self.second.is_set())


def duration_text(seconds: float) -> str:
    """A human duration: ``'45 s'``, ``'12 min'``, ``'3.5 h'``, ``'4.9 days'``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
