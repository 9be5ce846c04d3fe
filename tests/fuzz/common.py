"""Shared fuzzing settings: bounded in ``make test``, long in ``make fuzz``.

``C2S_FUZZ_EXAMPLES`` (default 50) is the number of examples per target; every example runs
under a watchdog: past ``EXAMPLE_TIMEOUT_S`` it fails as a hang (and a native hang that never
returns to Python ends the run, its stacks written to ``HANG_REPORT``, instead of blocking it).
"""

from __future__ import annotations

import contextlib
import faulthandler
import functools
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings

from c2s_desktop.core.errors import C2SError

EXAMPLES = int(os.environ.get("C2S_FUZZ_EXAMPLES", "50"))
EXAMPLE_TIMEOUT_S = float(os.environ.get("C2S_FUZZ_TIMEOUT", "10"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # the watchdog below bounds time; hypothesis' deadline only reports
    derandomize=EXAMPLES <= 100,  # the bounded run in `make test` is reproducible
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


HANG_REPORT = Path(tempfile.gettempdir()) / "c2s-fuzz-hang.txt"


@functools.cache
def _hang_report() -> Any:
    """Where a native hang's stacks go (the test's own stderr is captured and would be lost)."""
    return open(HANG_REPORT, "w")  # noqa: SIM115 - kept open for the whole run


class Hang(Exception):  # noqa: N818 - names the failure
    """An example ran past the per-example timeout."""


@contextlib.contextmanager
def watchdog(seconds: float = EXAMPLE_TIMEOUT_S) -> Iterator[None]:
    """Fail with :class:`Hang` past ``seconds`` (POSIX timer); dump and exit past 3×."""
    faulthandler.dump_traceback_later(3 * seconds, exit=True, file=_hang_report())
    use_timer = hasattr(signal, "setitimer") and sys.platform != "win32"

    def expire(signum: int, frame: Any) -> None:
        raise Hang(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire) if use_timer else None
    if use_timer:
        signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        if use_timer:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()


def result_or_c2s_error(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` under the watchdog; a C2SError is an allowed outcome (returned)."""
    with watchdog():
        try:
            return fn()
        except C2SError as exc:
            assert exc.one_line() and "\n" not in exc.one_line()
            return exc
