""":func:`~.train.finetune` in a spawned child process (as the app runs it): progress and
step reports are relayed; cancel asks the child to stop after its current step, keeping the
checkpoint, and ends it if it does not stop within a grace period."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..child_call import SPAWN, child_process, next_message, rebuilt_error, send_outcome
from ..errors import C2SError, Cancelled, DataError, InputFileError, OutputError
from ..progress import CancelToken, ProgressFn, no_progress
from .options import FinetuneOptions, FinetuneResult, StepReport

_POLL_S = 0.2
STOP_GRACE_S = 120.0
"""How long a cancelled child may take to finish its step and save its checkpoint."""


class FinetuneFailed(RuntimeError):
    """An unexpected failure inside the training process (details in its log)."""


def _errors() -> tuple[type[C2SError], ...]:
    """The errors that come back from the child as themselves (others as C2SError)."""
    from .base import TrainingUnavailable

    return (C2SError, InputFileError, DataError, OutputError, TrainingUnavailable)


def run_finetune_process(
    data_path: str | Path,
    base_dir: str | Path,
    out_path: str | Path,
    options: FinetuneOptions,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    on_step: Callable[[StepReport], None] | None = None,
    **kwargs: Any,
) -> FinetuneResult:
    """:func:`~.train.finetune` in a child process (``kwargs``: its other options); errors come
    back as the same :class:`C2SError` type and message, a cancel as :class:`Cancelled`."""
    from .train import finetune  # no torch until it runs

    inspect.signature(finetune).bind(data_path, base_dir, out_path, options, **kwargs)  # as a call
    progress = progress or no_progress
    stop = SPAWN.Event()
    args = (str(data_path), str(base_dir), str(out_path), options, stop, kwargs)
    with child_process(_child, args, name="c2s-finetune", grace_s=2.0) as (proc, conn):
        return _relay(proc, conn, stop, progress, on_step, cancel)


def _relay(
    proc: Any,
    conn: Any,
    stop: Any,
    progress: ProgressFn,
    on_step: Callable[[StepReport], None] | None,
    cancel: CancelToken | None,
) -> FinetuneResult:
    stopping_since: float | None = None
    while True:
        if cancel is not None and cancel.is_set() and stopping_since is None:
            stop.set()
            stopping_since = time.monotonic()
            progress(-1.0, "stopping after this step (the checkpoint is kept)")
        if stopping_since is not None and time.monotonic() - stopping_since > STOP_GRACE_S:
            raise Cancelled()
        ended = functools.partial(_ended, proc, stopping_since is not None)
        message = next_message(proc, conn, _POLL_S, ended)
        if message is None:
            continue
        kind, payload = message
        if kind == "progress":
            progress(*payload)
        elif kind == "step":
            if on_step is not None:
                on_step(payload)
        elif kind == "result":
            return payload
        elif kind == "cancelled":
            raise Cancelled()
        elif kind == "error":
            raise rebuilt_error(payload, _errors())
        else:
            raise FinetuneFailed(str(payload))


def _ended(proc: Any, cancelled: bool) -> Exception:
    proc.join(timeout=1.0)
    if cancelled:
        return Cancelled()
    return DataError(
        f"the training process ended unexpectedly (exit code {proc.exitcode})",
        hint="the computer may have run out of memory; try fewer genes (--n-genes) or a "
        "smaller batch",
    )


def _child(
    conn: Any, data: str, base: str, out: str, options: FinetuneOptions, stop: Any,
    kwargs: dict[str, Any],
) -> None:  # fmt: skip
    """Child-process entry: run :func:`~.train.finetune`, relay events, send the outcome."""
    import warnings

    warnings.simplefilter("ignore")
    last = [0.0]

    def relay(fraction: float, message: str) -> None:
        now = time.monotonic()
        if now - last[0] > 0.1 or fraction >= 1.0:
            last[0] = now
            conn.send(("progress", (fraction, message)))

    def run() -> FinetuneResult:
        from .train import finetune

        return finetune(
            data, base, out, options, progress=relay, cancel=stop,
            on_step=lambda report: conn.send(("step", report)), **kwargs,
        )  # fmt: skip

    send_outcome(conn, run, f"fine-tuning on {data}")
