"""The model process: owns a :class:`LocalEngine` and serves requests from :mod:`.process`.

Protocol over a ``multiprocessing`` pipe, one request at a time: the parent sends
``(op, args)`` (op: tokenize, score, generate, embed, close); the child answers with any number
of ``("token", str)`` / ``("progress", (fraction, message))`` messages, then exactly one of
``("result", value)``, ``("cancelled", None)`` or ``("error", (kind, message, path, hint))``.
Startup answers ``("ready", note)`` (why fewer GPU layers were used, or "") or an error.
Not a public interface.
"""

from __future__ import annotations

import os
import sys
from multiprocessing.connection import Connection
from typing import Any

from ..child_call import error_payload
from ..errors import C2SError, Cancelled
from ..progress import CancelToken
from .base import EngineOptions, ModelInfo


def serve(
    conn: Connection,
    path: str,
    options: EngineOptions,
    info: ModelInfo,
    cancel: CancelToken,
    log_path: str,
) -> None:
    """Child-process entry point (runs until ``close`` or the parent goes away)."""
    _redirect_stderr(log_path)
    os.environ["GGML_NO_BACKTRACE"] = "1"  # ggml reads it at abort time: no gdb backtrace
    from .local import LocalEngine

    limited = _limit_memory(options.memory_limit_bytes)
    try:
        engine = LocalEngine(path, options, info=info)
    except (C2SError, MemoryError) as exc:
        # A validated file whose context cannot be created ran out of memory (the KV cache is
        # allocated there): say so rather than "damaged file".
        no_context = isinstance(exc, C2SError) and "llama_context" in exc.message
        if limited or no_context or isinstance(exc, MemoryError):
            exc = _out_of_memory(path, options.memory_limit_bytes if limited else None, exc)
        conn.send(("error", error_payload(exc)))  # type: ignore[arg-type]
        return
    conn.send(("ready", engine.load_note))  # why fewer layers went to the GPU, if so
    try:
        while True:
            try:
                op, args = conn.recv()
            except EOFError:
                break
            if op == "close":
                break
            conn.send(_handle(engine, conn, cancel, op, args))
    finally:
        engine.close()


def _handle(engine: Any, conn: Connection, cancel: CancelToken, op: str, args: tuple) -> tuple:
    try:
        if op == "tokenize":
            result = engine.tokenize(*args)
        elif op == "score":
            result = engine.score(*args, cancel=cancel)
        elif op == "generate":
            result = engine.generate(
                *args, on_token=lambda text: conn.send(("token", text)), cancel=cancel
            )
        elif op == "embed":
            result = engine.embed(
                *args, progress=lambda f, m: conn.send(("progress", (f, m))), cancel=cancel
            )
        else:
            raise C2SError(f"unknown engine request {op!r}")
    except Cancelled:
        return ("cancelled", None)
    except C2SError as exc:
        return ("error", error_payload(exc))
    except Exception as exc:  # a bug or a llama-cpp-python error: report it, keep serving
        print(f"error in {op}: {exc!r}", file=sys.stderr, flush=True)
        return ("error", ("EngineError", f"{type(exc).__name__}: {exc}", None, ""))
    return ("result", result)


def _redirect_stderr(log_path: str) -> None:
    """Send fd 2 (llama.cpp's and ggml's messages, GGML_ASSERT lines) to the log file."""
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    sys.stderr.flush()
    os.dup2(fd, 2)
    os.close(fd)


def _limit_memory(limit: int | None) -> bool:
    """Cap this process's address space (POSIX ``RLIMIT_AS``); False when not applied."""
    if not limit:
        return False
    try:
        import resource
    except ImportError:  # Windows: no rlimits; the memory pre-flight still applies
        return False
    try:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ValueError, OSError) as exc:
        print(f"memory limit not applied: {exc}", file=sys.stderr, flush=True)
        return False
    return True


def _out_of_memory(path: str, limit: int | None, exc: BaseException) -> C2SError:
    from .base import NotEnoughMemory

    detail = exc.message if isinstance(exc, C2SError) else type(exc).__name__
    if limit:
        where = f"within the model process's memory limit of {limit / 1024**3:.2f} GB"
        hint = "raise the memory limit, or use a smaller quantization or a smaller context"
    else:
        where = "in the memory available"
        hint = "use a smaller context (--ctx) or a smaller quantization, or close other programs"
    return NotEnoughMemory(f"the model cannot be loaded {where} ({detail})", path=path, hint=hint)
