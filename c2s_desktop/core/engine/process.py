"""The Engine protocol with the model in a long-lived child process.

llama.cpp aborts the whole process on some malformed models (GGML_ASSERT at the first decode)
and when memory runs out. Here only the child dies: the call raises :class:`EngineCrashed`
with the exit signal and the child's last stderr lines, and :meth:`ProcessEngine.restart`
starts a fresh one. Cancel is a shared event the child checks every token (and llama.cpp
between graph nodes), so it takes effect well within a second.

Frozen apps must call ``multiprocessing.freeze_support()`` at startup (spawn start method).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..child_call import SPAWN, end_child, next_message, rebuilt_error, start_child
from ..errors import Cancelled
from ..models import validate_gguf
from ..progress import CancelToken, ProgressFn
from . import _worker, cpu_variants
from .base import (
    EngineCrashed,
    EngineError,
    EngineOptions,
    GenerateParams,
    Generation,
    ModelFileError,
    ModelInfo,
    NotEnoughMemory,
    Score,
    TokenCallback,
)

log = logging.getLogger(__name__)
_POLL_S = 0.05
_TAIL_LINES = 3
_ERRORS = (EngineError, ModelFileError, NotEnoughMemory)
"""The errors that come back from the model process as themselves (others as EngineError)."""
SKIP_MEMORY_CHECK_ENV = "C2S_SKIP_MEMORY_CHECK"
_GB = 1024**3
_OVERHEAD_BYTES = 64 * 1024**2  # runtime, compute graph and batch buffers of a small model


class ProcessEngine:
    """A GGUF served by a child process; same protocol as :class:`~.local.LocalEngine`.

    The file is validated before the child starts; ``validate=False`` skips the safety checks
    (tests use it to feed llama.cpp a model that aborts it).
    """

    def __init__(
        self, path: str | Path, options: EngineOptions | None = None, *, validate: bool = True
    ) -> None:
        self._path = str(path)
        self._options = options or EngineOptions()
        self._info = validate_gguf(path, strict=validate)
        if self._options.adapter:  # one clear error here, not a native one in the child
            from ..adapters import apply_adapter

            self._info = apply_adapter(self._info, self._options.adapter, path)
        check_memory(self._info, self._options)
        # Choose (and check once) llama.cpp's CPU variant here: the model process inherits it.
        cpu_variants.ensure_loaded()
        self._lock = threading.Lock()
        self._proc: Any = None
        self._conn: Any = None
        fd, self._log_path = tempfile.mkstemp(prefix="c2s-engine-", suffix=".log")
        os.close(fd)
        self._cancel = SPAWN.Event()
        self.load_note = ""
        """Set when the model did not fit in GPU memory and fewer layers went there."""
        try:
            self._start()
        except BaseException:
            os.remove(self._log_path)
            raise

    # -- lifecycle -----------------------------------------------------------------------------
    def _start(self) -> None:
        args = (self._path, self._options, self._info, self._cancel, self._log_path)
        self._proc, self._conn = start_child(_worker.serve, args, name="c2s-model", duplex=True)
        try:
            self.load_note = self._receive(None, None, None) or ""  # "ready", or the load error
        except BaseException:
            self._stop()
            raise

    def restart(self) -> None:
        """Stop the child (dead or alive) and start a fresh one on the same file."""
        with self._lock:
            self._stop()
            self._start()

    def close(self) -> None:
        with self._lock:
            self._stop()
            if os.path.exists(self._log_path):
                os.remove(self._log_path)

    def _stop(self) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if proc is None:
            return
        if proc.is_alive():
            with contextlib.suppress(OSError):
                conn.send(("close", ()))
            proc.join(timeout=5)
        end_child(proc, conn, grace_s=5)

    def __enter__(self) -> ProcessEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The model process's id (None when stopped)."""
        return None if self._proc is None else self._proc.pid

    # -- protocol ------------------------------------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def n_ctx(self) -> int:
        """The context size in tokens (as the child's LocalEngine sizes it)."""
        return self._options.n_ctx or self._info.n_ctx_train

    def tokenize(self, text: str) -> list[int]:
        return self._call("tokenize", (text,))

    def score(
        self, prefix: str, continuations: Sequence[str], cancel: CancelToken | None = None
    ) -> list[Score]:
        return self._call("score", (prefix, list(continuations)), cancel=cancel)

    def generate(
        self,
        prompt: str,
        params: GenerateParams,
        on_token: TokenCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Generation:
        return self._call("generate", (prompt, params), cancel=cancel, on_token=on_token)

    def embed(
        self,
        texts: Sequence[str],
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> np.ndarray:
        return self._call("embed", (list(texts),), cancel=cancel, progress=progress)

    # -- transport -----------------------------------------------------------------------------
    def _call(
        self,
        op: str,
        args: tuple,
        *,
        cancel: CancelToken | None = None,
        on_token: TokenCallback | None = None,
        progress: ProgressFn | None = None,
    ) -> Any:
        with self._lock:
            if self._proc is None:
                raise EngineCrashed(
                    "the model process is not running", path=self._path, hint="restart the engine"
                )
            self._cancel.clear()
            try:
                self._conn.send((op, args))
            except OSError:
                raise self._crashed() from None
            return self._receive(cancel, on_token, progress)

    def _receive(
        self,
        cancel: CancelToken | None,
        on_token: TokenCallback | None,
        progress: ProgressFn | None,
    ) -> Any:
        """Relay streamed messages until the final one; forward cancel; detect a dead child."""
        failure: BaseException | None = None
        while True:
            if cancel is not None and cancel.is_set():
                self._cancel.set()
            message = next_message(self._proc, self._conn, _POLL_S, self._crashed)
            if message is None:
                continue
            kind, payload = message
            try:
                if kind == "token" and on_token is not None and failure is None:
                    on_token(payload)
                elif kind == "progress" and progress is not None and failure is None:
                    progress(*payload)
            except BaseException as exc:  # a failing callback: stop the child's work, then raise
                failure = exc
                self._cancel.set()
            if kind in ("token", "progress"):
                continue
            if failure is not None:
                raise failure
            if kind == "error":
                raise rebuilt_error(payload, _ERRORS)
            if kind == "cancelled":
                raise Cancelled()
            return payload  # "result" or "ready"

    def _crashed(self) -> EngineCrashed:
        """Reap the dead child and describe its death."""
        proc = self._proc
        proc.join(timeout=5)
        code = proc.exitcode
        self._stop()
        if code is not None and code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with code {code}"
        tail = _tail(self._log_path, _TAIL_LINES)
        log.error("model process %s; last stderr lines:\n%s", how, "\n".join(tail))
        detail = f": {' | '.join(tail)}" if tail else ""
        limit = self._options.memory_limit_bytes
        hint = (
            "restart the engine; if it happens again the model file is damaged, "
            "unsupported or too large for this computer's memory"
        )
        if limit:
            hint = (
                f"the model process may not use more than {limit / _GB:.2f} GB of address "
                f"space; raise the limit, or use a smaller quantization or context; {hint}"
            )
        return EngineCrashed(f"the model process {how}{detail}", path=self._path, hint=hint)


def _tail(path: str, n: int) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [line.rstrip() for line in f.readlines()[-50:]]
    except OSError:
        return []
    return [line for line in lines if line.strip()][-n:]


# -- memory pre-flight -------------------------------------------------------------------------
def estimate_memory(info: ModelInfo, options: EngineOptions) -> tuple[int, int]:
    """Bytes the model needs in RAM: ``(weights, context cache + buffers)``.

    Weights are the file size (llama.cpp maps the file, or reads it when an adapter is applied)
    plus the LoRA adapter's; the KV cache holds f16 keys and values of ``n_embd`` per layer and
    token (an upper bound with grouped-query attention); logits of one batch and a fixed
    overhead complete it.
    """
    n_ctx = options.n_ctx or info.n_ctx_train
    kv = 2 * 2 * info.n_layer * info.n_embd * n_ctx
    logits = 4 * info.n_vocab * min(options.n_batch, n_ctx)
    adapter = os.path.getsize(options.adapter) if options.adapter else 0
    return info.size_bytes + adapter, kv + logits + _OVERHEAD_BYTES


def available_memory() -> int | None:
    """Bytes of memory a new process can use now (None when this platform does not say)."""
    found: list[int] = []
    if sys.platform.startswith("linux"):
        found += _linux_available()
    elif sys.platform == "win32":
        found += _windows_available()
    else:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            pages = os.sysconf("SC_AVPHYS_PAGES")
            if pages > 0:
                found.append(pages * os.sysconf("SC_PAGE_SIZE"))
    return min(found) if found else None


def _linux_available() -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    # A container's memory limit (cgroup v2) is often far below the machine's memory.
    with contextlib.suppress(OSError, ValueError):
        cg = Path("/sys/fs/cgroup")
        limit = (cg / "memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int((cg / "memory.current").read_text()))
    return found


def _windows_available() -> list[int]:
    import ctypes

    class Status(ctypes.Structure):
        _fields_ = [
            ("dwLength", ctypes.c_ulong),
            ("dwMemoryLoad", ctypes.c_ulong),
            ("ullTotalPhys", ctypes.c_ulonglong),
            ("ullAvailPhys", ctypes.c_ulonglong),
            ("ullTotalPageFile", ctypes.c_ulonglong),
            ("ullAvailPageFile", ctypes.c_ulonglong),
            ("ullTotalVirtual", ctypes.c_ulonglong),
            ("ullAvailVirtual", ctypes.c_ulonglong),
            ("ullAvailExtendedVirtual", ctypes.c_ulonglong),
        ]

    status = Status()
    status.dwLength = ctypes.sizeof(Status)
    try:
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
            return [int(status.ullAvailPhys)]
    except (AttributeError, OSError):
        pass
    return []


def check_memory(info: ModelInfo, options: EngineOptions) -> None:
    """Raise :class:`NotEnoughMemory` (with the numbers) when the model will not fit.

    Skipped when ``options.check_memory`` is False, ``$C2S_SKIP_MEMORY_CHECK`` is set, layers
    go to a GPU, or the platform does not report available memory.
    """
    skip = os.environ.get(SKIP_MEMORY_CHECK_ENV, "").strip().lower() not in ("", "0", "no")
    if not options.check_memory or skip or options.n_gpu_layers != 0:
        return
    available = available_memory()
    if available is None:
        return
    weights, context = estimate_memory(info, options)
    if weights + context <= available:
        return
    n_ctx = options.n_ctx or info.n_ctx_train
    raise NotEnoughMemory(
        f"the model needs about {_size(weights + context)} of memory "
        f"({_size(weights)} weights + {_size(context)} context cache for "
        f"{n_ctx:,} tokens) but only {_size(max(available, 0))} is available",
        path=info.path,
        hint="use a smaller quantization (e.g. q4_k_m) or a smaller context (--ctx), close "
        f"other programs, or set {SKIP_MEMORY_CHECK_ENV}=1 to try anyway",
    )


def _size(n: int) -> str:
    return f"{n / _GB:.2f} GB" if n >= _GB // 10 else f"{n / 1024**2:.0f} MB"
