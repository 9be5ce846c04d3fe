"""One function call in a fresh child process (spawned), e.g. to keep torch out of the window's
process: the result comes back, user errors come back as the same :class:`C2SError` type,
and a cancel ends the child."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from typing import Any

from . import errors
from .errors import C2SError
from .progress import CancelToken, check_cancel

_POLL_S = 0.2


def _child_call(fn: Callable[..., Any], args: tuple) -> tuple:
    """Run ``fn(*args)`` in the child: ``("ok", value)`` or the error as plain values (an
    exception class with its own constructor may not survive pickling)."""
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # noqa: BLE001 - sent back to the parent
        message = getattr(exc, "message", None)
        if message is None:
            return ("failed", f"{type(exc).__name__}: {exc}")
        path, hint = getattr(exc, "path", None), getattr(exc, "hint", "") or ""
        return ("error", type(exc).__name__, str(message), path and str(path), str(hint))


def call_in_child(fn: Callable[..., Any], *args: Any, cancel: CancelToken | None = None) -> Any:
    """``fn(*args)`` in a fresh child process. A :class:`C2SError` (or c2s-quantize's
    ``QuantizeError``, as a :class:`DataError`) is raised again here with its message, path and
    hint; any other failure as RuntimeError; a cancel ends the child and raises Cancelled."""
    with mp.get_context("spawn").Pool(1) as pool:  # leaving the block ends the child
        pending = pool.apply_async(_child_call, (fn, args))
        while not pending.ready():
            check_cancel(cancel)
            pending.wait(_POLL_S)
        outcome = pending.get()
    if outcome[0] == "ok":
        return outcome[1]
    if outcome[0] == "failed":
        raise RuntimeError(outcome[1])
    _, name, message, path, hint = outcome
    kind = getattr(errors, name, None)
    if not (isinstance(kind, type) and issubclass(kind, C2SError)):
        kind = errors.DataError if name == "QuantizeError" else C2SError
    raise kind(message, path=path, hint=hint)
