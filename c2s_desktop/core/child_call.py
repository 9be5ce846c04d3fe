"""Work in a fresh child process (spawned), e.g. to keep torch out of the window's process.

:func:`call_in_child` runs one function call there: the result comes back, user errors come
back as the same :class:`C2SError` type, and a cancel ends the child. The runners that relay
messages from a child of their own (preprocessing, fine-tuning, the model process) start and
end it with :func:`start_child` / :func:`end_child` (or :func:`child_process`), read it with
:func:`next_message`; in the child, :func:`send_outcome` sends how the work ended (a user error
as :func:`error_payload`, raised again in the parent by :func:`rebuilt_error`).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import wait
from typing import Any

from . import errors
from .errors import C2SError, Cancelled
from .progress import CancelToken, check_cancel

_POLL_S = 0.2
SPAWN = mp.get_context("spawn")
"""How every child starts: a fresh interpreter (frozen apps call ``freeze_support()``)."""


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
    with SPAWN.Pool(1) as pool:  # leaving the block ends the child
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


# -- a child process of one's own --------------------------------------------------------------
def start_child(
    target: Callable[..., None], args: tuple, *, name: str, duplex: bool = False
) -> tuple[Any, Any]:
    """Start ``target(conn, *args)`` in a spawned daemon process; returns the process and this
    end of the pipe (one-way, child to parent, unless ``duplex``). The child's end is closed
    here, so reading a child that died raises EOFError instead of waiting."""
    parent, child = SPAWN.Pipe(duplex=duplex)
    proc = SPAWN.Process(target=target, args=(child, *args), name=name, daemon=True)
    try:
        proc.start()
    except BaseException:
        parent.close()
        raise
    finally:
        child.close()
    return proc, parent


def end_child(proc: Any, conn: Any, grace_s: float) -> None:
    """Terminate the child if it still runs (killed if it has not ended ``grace_s`` seconds
    later) and close ``conn``."""
    if proc.is_alive():
        proc.terminate()
        proc.join(timeout=grace_s)
    if proc.is_alive():
        proc.kill()
        proc.join()
    conn.close()


@contextlib.contextmanager
def child_process(
    target: Callable[..., None], args: tuple, *, name: str, grace_s: float
) -> Iterator[tuple[Any, Any]]:
    """:func:`start_child` for the block; leaving it ends the child (:func:`end_child`)."""
    proc, conn = start_child(target, args, name=name)
    try:
        yield proc, conn
    finally:
        end_child(proc, conn, grace_s)


def next_message(
    proc: Any, conn: Any, timeout: float, ended: Callable[[], BaseException]
) -> Any | None:
    """The child's next message, or None when none came within ``timeout`` seconds (the caller
    looks at its cancel and asks again). Raises ``ended()`` when the child is gone with nothing
    left to read."""
    if not conn.poll():
        if proc.is_alive():
            wait([conn, proc.sentinel], timeout=timeout)
            return None
        if not conn.poll():
            raise ended()
    try:
        return conn.recv()
    except (EOFError, OSError):
        raise ended() from None


def error_payload(exc: C2SError) -> tuple[str, str, str | None, str]:
    """A C2SError as plain values (its keyword-only constructor does not pickle)."""
    return (type(exc).__name__, exc.message, exc.path, exc.hint)


def rebuilt_error(
    payload: tuple[str, str, str | None, str], kinds: Sequence[type[C2SError]]
) -> C2SError:
    """The error :func:`error_payload` describes, as the class in ``kinds`` of its name (else
    as ``kinds[0]``) with its message, path and hint."""
    name, message, path, hint = payload
    kind = next((k for k in kinds if k.__name__ == name), kinds[0])
    return kind(message, path=path, hint=hint)


def send_outcome(conn: Any, run: Callable[[], Any], what: str) -> None:
    """In the child: send ``("result", run())``, or ``("cancelled", None)``, or a C2SError as
    ``("error", error_payload(exc))``, or any other failure as ``("failed", text)`` (logged as
    ``what``; the text says where); then close ``conn``."""
    from .logs import log_exception

    try:
        conn.send(("result", run()))
    except Cancelled:
        conn.send(("cancelled", None))
    except C2SError as exc:
        conn.send(("error", error_payload(exc)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, logged here
        where = log_exception(exc, what)
        conn.send(("failed", f"{type(exc).__name__}: {exc} (details in {where})"))
    finally:
        conn.close()
