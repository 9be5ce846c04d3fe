"""Progress callbacks and cancel tokens shared by every long-running function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .errors import Cancelled

ProgressFn = Callable[[str, float], None]
"""``progress(message, fraction)`` with ``fraction`` in [0, 1] for the whole call."""


class CancelToken(Protocol):
    """Anything with ``is_set()``, e.g. ``threading.Event``."""

    def is_set(self) -> bool: ...


def check_cancel(cancel: CancelToken | None) -> None:
    """Raise :class:`Cancelled` if the token is set."""
    if cancel is not None and cancel.is_set():
        raise Cancelled()


@dataclass(frozen=True)
class Stage:
    """Maps a sub-task's 0..1 progress into the ``[start, end]`` slice of a parent's progress."""

    progress: ProgressFn | None
    start: float = 0.0
    end: float = 1.0

    def __call__(self, message: str, fraction: float) -> None:
        if self.progress is not None:
            f = min(max(fraction, 0.0), 1.0)
            self.progress(message, self.start + (self.end - self.start) * f)

    def sub(self, start: float, end: float) -> Stage:
        """The slice ``[start, end]`` (relative to this stage) as a new stage."""
        width = self.end - self.start
        return Stage(self.progress, self.start + width * start, self.start + width * end)
