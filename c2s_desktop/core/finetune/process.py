""":func:`~.train.finetune` in a spawned child process (as the app runs it): progress and
step reports are relayed; cancel asks the child to stop after its current step, keeping the
checkpoint, and ends it if it does not stop within a grace period."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable, Mapping
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from ..errors import C2SError, Cancelled, DataError, InputFileError, OutputError
from ..progress import CancelToken, ProgressFn, no_progress
from .options import FinetuneOptions, FinetuneResult, StepReport

_POLL_S = 0.2
STOP_GRACE_S = 120.0
"""How long a cancelled child may take to finish its step and save its checkpoint."""


class FinetuneFailed(RuntimeError):
    """An unexpected failure inside the training process (details in its log)."""


def _errors() -> dict[str, type[C2SError]]:
    from .base import TrainingUnavailable

    classes: tuple[type[C2SError], ...] = (
        C2SError, InputFileError, DataError, OutputError, TrainingUnavailable,
    )  # fmt: skip
    return {cls.__name__: cls for cls in classes}


def run_finetune_process(
    data_path: str | Path,
    base_dir: str | Path,
    out_path: str | Path,
    options: FinetuneOptions,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    on_step: Callable[[StepReport], None] | None = None,
    merge_dir: str | Path | None = None,
    overwrite: bool = True,
    read_options: Mapping[str, Any] | None = None,
) -> FinetuneResult:
    """:func:`~.train.finetune` in a child process; errors come back as the same
    :class:`C2SError` type and message, a cancel as :class:`Cancelled`."""
    progress = progress or no_progress
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    stop = ctx.Event()
    kwargs = {
        "merge_dir": None if merge_dir is None else str(merge_dir),
        "overwrite": overwrite,
        "read_options": dict(read_options or {}),
    }
    proc = ctx.Process(
        target=_child,
        args=(child, str(data_path), str(base_dir), str(out_path), options, stop, kwargs),
        name="c2s-finetune",
        daemon=True,
    )
    try:
        proc.start()
        child.close()
        return _relay(proc, parent, stop, progress, on_step, cancel)
    finally:
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=2.0)
        if proc.is_alive():
            proc.kill()
            proc.join()
        parent.close()


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
        if not conn.poll():
            if proc.is_alive():
                wait([conn, proc.sentinel], timeout=_POLL_S)
                continue
            if not conn.poll():
                raise _ended(proc, stopping_since is not None)
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):
            raise _ended(proc, stopping_since is not None) from None
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
            name, message, path, hint = payload
            raise _errors().get(name, C2SError)(message, path=path, hint=hint)
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

    from ..logs import log_exception

    warnings.simplefilter("ignore")
    last = [0.0]

    def relay(fraction: float, message: str) -> None:
        now = time.monotonic()
        if now - last[0] > 0.1 or fraction >= 1.0:
            last[0] = now
            conn.send(("progress", (fraction, message)))

    try:
        from .train import finetune

        result = finetune(
            data, base, out, options, progress=relay, cancel=stop,
            on_step=lambda report: conn.send(("step", report)), **kwargs,
        )  # fmt: skip
        conn.send(("result", result))
    except Cancelled:
        conn.send(("cancelled", None))
    except C2SError as exc:
        conn.send(("error", (type(exc).__name__, exc.message, exc.path, exc.hint)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, logged here
        where = log_exception(exc, f"fine-tuning on {data}")
        conn.send(("failed", f"{type(exc).__name__}: {exc} (details in {where})"))
    finally:
        conn.close()
