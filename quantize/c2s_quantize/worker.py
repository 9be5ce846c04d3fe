"""Run llama.cpp work in a child process (``python -m c2s_quantize._worker``).

llama.cpp can abort the whole process (GGML_ASSERT) and its C calls cannot be interrupted;
a child process keeps the caller alive and lets cancel stop the work within a second.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import Cancelled, QuantizeError
from .progress import CancelToken

log = logging.getLogger("c2s_quantize.llama")
_POLL_S = 0.2
EXIT_USER_ERROR = 2  # the child printed a QuantizeError line


def run_worker(
    args: Sequence[str],
    *,
    what: str,
    path: Path,
    on_line: Callable[[str], None] | None = None,
    cancel: CancelToken | None = None,
) -> None:
    """Run a worker command; stderr lines go to ``on_line`` and the ``c2s_quantize.llama`` log.

    Raises Cancelled (after killing the child) or QuantizeError when the child fails.
    """
    env = {**os.environ, "GGML_NO_BACKTRACE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "c2s_quantize._worker", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        env=env,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(proc, lines), daemon=True).start()
    tail: collections.deque[str] = collections.deque(maxlen=20)
    try:
        while True:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            try:
                line = lines.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if line is None:
                break
            tail.append(line)
            log.debug(line)
            if on_line is not None:
                on_line(line)
        code = proc.wait()
    except BaseException:
        _stop(proc)
        raise
    if code != 0:
        raise _failure(code, tail, what, path)


def _pump(proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _failure(code: int, tail: collections.deque[str], what: str, path: Path) -> QuantizeError:
    last = next((x for x in reversed(tail) if x.strip()), "")
    if code == EXIT_USER_ERROR and last.startswith("error: "):
        return QuantizeError(last.removeprefix("error: "), "", path)
    if code < 0 or code == 134:
        return QuantizeError(
            f"llama.cpp aborted while {what} ({last or f'signal {-code}'})",
            "the file is damaged or not a model llama.cpp supports; convert it again",
            path,
        )
    return QuantizeError(
        f"{what} failed (exit code {code}): {last}",
        "rerun with --verbose for llama.cpp's log",
        path,
    )
