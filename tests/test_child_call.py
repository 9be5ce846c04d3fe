"""call_in_child: a call in a fresh process, its result or its error as the same C2SError; a
child of one's own: its messages, its end, and a kill when it ignores terminate."""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from c2s_desktop.core.child_call import call_in_child, child_process, next_message
from c2s_desktop.core.errors import Cancelled, InputFileError


def test_result_comes_back() -> None:
    assert call_in_child(math.factorial, 20) == math.factorial(20)


def test_user_error_comes_back_as_the_same_type(tmp_path: Path) -> None:
    from c2s_desktop.core.dataset import open_dataset

    missing = tmp_path / "nope.h5ad"
    with pytest.raises(InputFileError) as info:
        call_in_child(open_dataset, missing)
    assert str(missing) in str(info.value.path) and info.value.message


def test_other_failures_are_runtime_errors() -> None:
    with pytest.raises(RuntimeError, match="ValueError"):
        call_in_child(math.sqrt, -1.0)


def test_cancel_ends_the_child() -> None:
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        call_in_child(time.sleep, 60, cancel=cancel)
    assert time.monotonic() - started < 30


def _sends_then_exits(conn) -> None:  # noqa: ANN001 - runs in the child
    conn.send(("progress", (0.5, "half")))
    conn.send(("result", 42))


def _ignores_terminate(conn) -> None:  # noqa: ANN001 - runs in the child
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    conn.send(("ready", None))
    time.sleep(60)


def _messages(proc, conn) -> list:  # noqa: ANN001
    """Every message until the child is gone, then the error ``ended`` made."""
    out = []
    while True:
        try:
            message = next_message(proc, conn, 0.05, lambda: LookupError("ended"))
        except LookupError as exc:
            return [*out, str(exc)]
        if message is not None:
            out.append(message)


def test_messages_sent_before_the_child_exits_are_read_then_its_end() -> None:
    with child_process(_sends_then_exits, (), name="c2s-test", grace_s=1.0) as (proc, conn):
        assert _messages(proc, conn) == [("progress", (0.5, "half")), ("result", 42), "ended"]
    assert not proc.is_alive() and conn.closed


@pytest.mark.skipif(sys.platform == "win32", reason="terminate is already a kill there")
def test_a_child_that_ignores_terminate_is_killed_after_the_grace_period() -> None:
    with child_process(_ignores_terminate, (), name="c2s-test", grace_s=0.5) as (proc, conn):
        while (message := next_message(proc, conn, 0.05, RuntimeError)) is None:
            pass
        assert message == ("ready", None)
        started = time.monotonic()
    assert proc.exitcode == -signal.SIGKILL and conn.closed
    assert 0.4 < time.monotonic() - started < 30
