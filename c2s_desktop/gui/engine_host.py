"""The window's one loaded model: load in the background, remember, show, survive a crash.

:class:`EngineHost` owns a :class:`~c2s_desktop.core.engine.process.ProcessEngine` (the model
runs in a child process). Tasks ask for it with :meth:`EngineHost.engine` from their background
job; when the child dies the job fails with :class:`EngineCrashed` and
:meth:`EngineHost.handle_failure` tells the user what happened and offers "Restart model".
The dataset, selections and results live in the window and are never touched here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from ..core.context_size import auto_context
from ..core.engine.base import Engine, EngineCrashed, EngineError, EngineOptions, ModelInfo
from ..core.engine.cores import physical_cores
from ..core.errors import Cancelled
from ..core.model_store import cached_sha256
from .jobs import Job, JobRunner

if TYPE_CHECKING:  # the HTTP client is imported only when a server is used
    from ..core.engine.remote import ServerOptions

MODEL_SLOT = "model"
HASH_SLOT = "model-hash"
ADAPTER_HASH_SLOT = "adapter-hash"
CHEAP_AUTOLOAD_BYTES = 256 << 20
"""A remembered model this small loads at start; larger ones load when a task needs them."""

_NO_MODEL_HINT = "choose one in Model ▸ Models… (Ctrl+M)"


def process_rss(pid: int | None) -> int | None:
    """Resident memory of process ``pid`` in bytes (Linux ``/proc``); None where unknown."""
    if pid is None or not sys.platform.startswith("linux"):
        return None
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def gpu_offload_supported() -> bool:
    """Whether llama.cpp reports a GPU backend here (its own device report, after the backend
    modules for this machine are loaded)."""
    try:
        from ..core.engine.backend import backend_info

        return backend_info().gpu_offload
    except Exception:  # noqa: BLE001 - no usable llama_cpp means no offload
        return False


@dataclass(frozen=True)
class RunOptions:
    """How the user wants models run: threads, context (0 = auto from the GGUF), GPU layers."""

    threads: int = 0
    n_ctx: int = 0
    n_gpu_layers: int = 0

    def engine_options(self, info: ModelInfo) -> EngineOptions:
        """Concrete :class:`EngineOptions` for the model ``info`` describes."""
        ctx = auto_context(info.n_ctx_train, self.n_ctx)
        return EngineOptions(
            n_ctx=ctx, threads=self.threads or physical_cores(), n_gpu_layers=self.n_gpu_layers
        )


def _open_engine(path: Path, options: RunOptions, adapter: Path | None = None) -> Engine:
    from ..core.engine.process import ProcessEngine
    from ..core.models import validate_gguf

    info = validate_gguf(path)
    engine_options = options.engine_options(info)
    if adapter is not None:  # a LoRA adapter of this base (checked before the model loads)
        engine_options = replace(engine_options, adapter=str(adapter))
    return ProcessEngine(path, engine_options)


def _open_remote(options: ServerOptions) -> Engine:
    from ..core.engine.remote import RemoteEngine

    return RemoteEngine(options)


def _restart(engine: Engine) -> Engine:
    engine.restart()  # type: ignore[attr-defined]
    return engine


def _close_engine(engine: object) -> None:
    if hasattr(engine, "close"):
        engine.close()  # type: ignore[union-attr]


def human_bytes(n: int | None) -> str:
    """``1.5 GB``-style size; ``n/a`` for None."""
    if n is None:
        return "n/a"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit in ("B", "KB") else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


class EngineHost(QObject):
    """The loaded model of a window (or none); load/unload/restart run as background jobs."""

    changed = Signal()
    """A model was loaded, unloaded, crashed or restarted (also: loading started/failed)."""
    crashed = Signal(str)
    """One line describing a crash of the model process."""

    def __init__(self, runner: JobRunner, parent: QWidget, settings: QSettings) -> None:
        super().__init__(parent)
        self._runner, self._parent, self._settings = runner, parent, settings
        self._engine: Engine | None = None
        self._path: Path | None = None
        self._adapter: Path | None = None
        self._adapter_sha256: str | None = None
        self._sha256: str | None = None
        self._options = self._stored_options()
        self._loading: Path | None = None
        self._server: ServerOptions | None = None
        self._connecting: ServerOptions | None = None
        self._then: list[Callable[[], None]] = []
        self._job: Job | None = None
        self.crash_message: str | None = None
        self.crash_box: QMessageBox | None = None
        self.load_error: BaseException | None = None

    # -- the contract --------------------------------------------------------------------------
    def is_loaded(self) -> bool:
        """True when a model process is running and ready for work."""
        return self._engine is not None and getattr(self._engine, "pid", 1) is not None

    def engine(self) -> Engine:
        """The loaded engine; raises :class:`EngineError` when there is none (or it crashed)."""
        if self._engine is None:
            raise EngineError("no model is loaded", hint=_NO_MODEL_HINT)
        if not self.is_loaded():
            raise EngineCrashed(
                "the model process is not running", hint="restart it: Model ▸ Restart model"
            )
        return self._engine

    @property
    def info(self) -> ModelInfo | None:
        return None if self._engine is None else self._engine.info

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def sha256(self) -> str | None:
        return self._sha256

    @property
    def adapter(self) -> Path | None:
        """The LoRA adapter the loaded model runs with (None: the base model alone)."""
        return self._adapter

    @property
    def server_url(self) -> str | None:
        """The inference server in use (None for a local model)."""
        return None if self._server is None else self._server.url

    def model_record(self) -> dict[str, str | None]:
        """Which model answered: name, file and sha256, or the server (for provenance/audit)."""
        info = self.info
        return {
            "name": None if info is None else info.name,
            "path": None if self._path is None else str(self._path),
            "sha256": self._sha256,
            "server": self.server_url,
            "adapter": None if self._adapter is None else str(self._adapter),
            "adapter_sha256": self._adapter_sha256 if self._adapter is not None else None,
        }

    def handle_failure(self, exc: BaseException) -> bool:
        """For :class:`EngineCrashed`: record it, emit ``crashed``, offer a restart; else False."""
        if not isinstance(exc, EngineCrashed):
            return False
        self.crash_message = exc.message
        self.crashed.emit(exc.one_line())
        self.changed.emit()
        self._show_crash(exc)
        return True

    # -- state for the window ------------------------------------------------------------------
    @property
    def options(self) -> RunOptions:
        return self._options

    @property
    def loading(self) -> Path | None:
        """The file being loaded right now, or None."""
        return self._loading

    @property
    def pid(self) -> int | None:
        return None if self._engine is None else getattr(self._engine, "pid", None)

    def memory_bytes(self) -> int | None:
        """Resident memory of the model process (None where it cannot be read)."""
        return process_rss(self.pid)

    def remembered_path(self) -> Path | None:
        value = self._settings.value("model/path", "")
        return Path(str(value)) if value else None

    def remembered_adapter(self) -> Path | None:
        """The adapter last used with the remembered model (None when none or gone)."""
        value = self._settings.value("model/adapter", "")
        return Path(str(value)) if value and Path(str(value)).is_file() else None

    def state_text(self) -> str:
        """``Model: NAME QUANT ● loaded, CPU 4 thr`` / ``loading…`` / ``crashed`` / ``no model``."""
        if self._connecting is not None:
            return f"Model: connecting to {self._connecting.url}…"
        if self._loading is not None:
            return f"Model: {self._loading.name} ◌ loading…"
        if self._engine is None:
            return "Model: no model"
        info = self._engine.info
        if self._server is not None:
            return f"Model: {info.name} ● server {self._server.url}"
        name = f"{info.name} {info.file_type}"
        if self._adapter is not None:
            name += f" + {self._adapter.stem}"
        if not self.is_loaded():
            return f"Model: {name} ✕ stopped (restart it)"
        opts = getattr(self._engine, "_options", None)
        threads = getattr(opts, "threads", None) or self._options.threads or physical_cores()
        gpu = getattr(opts, "n_gpu_layers", 0)
        where = f"GPU {'all' if gpu < 0 else gpu} layers + CPU" if gpu else "CPU"
        note = getattr(self._engine, "load_note", "")  # fewer layers fitted in GPU memory
        return f"Model: {name} ● loaded, {where} {threads} thr" + (f" ⚠ {note}" if note else "")

    # -- loading -------------------------------------------------------------------------------
    def set_options(self, options: RunOptions) -> None:
        """Remember run options; they apply at the next load (see :meth:`reload`)."""
        self._options = options
        self._settings.setValue("model/threads", options.threads)
        self._settings.setValue("model/n_ctx", options.n_ctx)
        self._settings.setValue("model/n_gpu_layers", options.n_gpu_layers)

    def load(
        self,
        path: Path,
        then: Callable[[], None] | None = None,
        adapter: Path | None = None,
    ) -> bool:
        """Load ``path`` in the background (replacing the current model), with the LoRA
        ``adapter`` when given; False if the model slot is busy. ``then`` runs on the GUI thread
        once the model is ready."""
        if self._runner.is_busy(MODEL_SLOT):
            return False
        path = Path(path)
        adapter = None if adapter is None else Path(adapter)
        if self._engine is not None:  # free its memory first: two big models may not fit
            self._engine.close()
            self._engine = None
        self._loading, self.load_error = path, None
        self._then = [then] if then is not None else []
        self.changed.emit()
        self._job = self._runner.start(
            MODEL_SLOT,
            _open_engine,
            path,
            self._options,
            adapter,
            on_success=lambda engine: self._loaded(path, engine, adapter),
            on_failure=self._load_failed,
            discard=_close_engine,
        )
        return True

    def reload(self) -> bool:
        """Load the current (or remembered) model again, e.g. with new options."""
        if self._path is not None:
            return self.load(self._path, adapter=self._adapter)
        path = self.remembered_path()
        return path is not None and self.load(path, adapter=self.remembered_adapter())

    def ensure(self, then: Callable[[], None]) -> bool:
        """Run ``then`` once a model is ready: now, after the running load, or after loading the
        remembered model. False (and nothing runs) when no model is known or the slot is busy."""
        if self.is_loaded():
            then()
            return True
        if self._loading is not None or self._connecting is not None:
            self._then.append(then)
            return True
        if self._engine is not None:  # crashed: restart, then go on
            return self.restart(then)
        path = self.remembered_path()
        if path is None or not path.is_file():
            return False
        return self.load(path, then, self.remembered_adapter())

    def autoload(self) -> bool:
        """At start: load the remembered model if it is small enough to be cheap."""
        path = self.remembered_path()
        if path is None or not path.is_file() or path.stat().st_size > CHEAP_AUTOLOAD_BYTES:
            return False
        return self.load(path, adapter=self.remembered_adapter())

    def unload(self) -> None:
        """Stop the model process (the remembered model stays for the next start).

        A running model job is cancelled first; the process stops once that job has ended
        (closing it meanwhile would block the window until the model call returns)."""
        job = self._runner.current.get(MODEL_SLOT)
        if job is not None and job.is_running():
            self._runner.cancel(MODEL_SLOT)
            job.done.connect(self.unload)
            return
        engine, self._engine, self._path, self._sha256 = self._engine, None, None, None
        self._adapter = None
        self.crash_message, self._server = None, None
        if engine is not None:
            engine.close()
        self.changed.emit()

    def restart(self, then: Callable[[], None] | None = None) -> bool:
        """Start a fresh model process on the same file (after a crash)."""
        if self._engine is None:
            return self.reload()
        if self._server is not None:
            return self.connect_server(self._server, then)
        if self._runner.is_busy(MODEL_SLOT):
            return False
        self._loading = self._path
        self._then = [then] if then is not None else []
        self.changed.emit()
        self._job = self._runner.start(
            MODEL_SLOT,
            _restart,
            self._engine,
            on_success=lambda engine: self._loaded(self._path, engine, self._adapter),  # type: ignore[arg-type]
            on_failure=self._load_failed,
        )
        return True

    def connect_server(
        self, options: ServerOptions, then: Callable[[], None] | None = None
    ) -> bool:
        """Use a model on an OpenAI-compatible server (checked in the background) instead of a
        local one; False if the model slot is busy."""
        if self._runner.is_busy(MODEL_SLOT):
            return False
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        self._connecting, self.load_error = options, None
        self._then = [then] if then is not None else []
        self.changed.emit()
        self._job = self._runner.start(
            MODEL_SLOT,
            _open_remote,
            options,
            on_success=lambda engine: self._connected(options, engine),
            on_failure=self._load_failed,
            discard=_close_engine,
        )
        return True

    def _connected(self, options: ServerOptions, engine: Engine) -> None:
        old, self._engine = self._engine, engine
        if old is not None and old is not engine:
            old.close()
        self._path, self._sha256, self._server, self._adapter = None, None, options, None
        self._connecting, self._loading, self.crash_message = None, None, None
        self._settings.setValue("model/server", options.url)
        self.changed.emit()
        then, self._then = self._then, []
        if then and self._job is not None:
            self._job.done.connect(lambda: [fn() for fn in then])

    def close(self) -> None:
        """Free the model at window close (after the runner has stopped its jobs)."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def _loaded(self, path: Path, engine: Engine, adapter: Path | None = None) -> None:
        if adapter != self._adapter:
            self._adapter_sha256 = None
        self._server, self._adapter = None, adapter
        old, self._engine = self._engine, engine
        if old is not None and old is not engine:
            old.close()
        if self._path != path:
            self._sha256 = None
        self._path, self._loading, self.crash_message = path, None, None
        self._settings.setValue("model/path", str(path))
        self._settings.setValue("model/adapter", "" if adapter is None else str(adapter))
        self.changed.emit()
        if self._sha256 is None:
            self._runner.start(
                HASH_SLOT,
                cached_sha256,
                path,
                on_success=lambda digest: self._hashed(path, digest),
                on_failure=lambda exc: None,
            )
        if adapter is not None and self._adapter_sha256 is None:
            self._runner.start(
                ADAPTER_HASH_SLOT,
                cached_sha256,
                adapter,
                on_success=lambda digest: self._adapter_hashed(adapter, digest),
                on_failure=lambda exc: None,
            )
        then, self._then = self._then, []
        if then and self._job is not None:
            # run once the loading job's thread has ended: the "model" slot is free by then
            self._job.done.connect(lambda: [fn() for fn in then])

    def _hashed(self, path: Path, digest: str) -> None:
        if self._path == path:
            self._sha256 = digest
            self.changed.emit()

    def _adapter_hashed(self, adapter: Path, digest: str) -> None:
        if self._adapter == adapter:
            self._adapter_sha256 = digest
            self.changed.emit()

    def _load_failed(self, exc: BaseException) -> None:
        self._loading, self._connecting, self._then = None, None, []
        self.changed.emit()
        if isinstance(exc, Cancelled):
            return
        self.load_error = exc
        from .dialogs import show_error

        show_error(self._parent, "Cannot load the model", exc)

    # -- crash ---------------------------------------------------------------------------------
    def _show_crash(self, exc: EngineCrashed) -> None:
        box = QMessageBox(
            QMessageBox.Icon.Critical,
            "The model process stopped",
            f"The model process stopped unexpectedly.\n\n{exc.message}",
            parent=self._parent,
        )
        box.setInformativeText(
            "Your data, selections and results are safe. Restart the model to go on; "
            "if it happens again the model file may be damaged or too large for this "
            "computer's memory."
        )
        self.restart_button = box.addButton("Restart model", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Close)
        self.restart_button.clicked.connect(lambda: self.restart())
        self.crash_box = box
        box.open()

    def _stored_options(self) -> RunOptions:
        def number(key: str) -> int:
            try:
                return int(self._settings.value(key, 0) or 0)
            except (TypeError, ValueError):
                return 0

        return RunOptions(
            threads=number("model/threads"),
            n_ctx=number("model/n_ctx"),
            # Every layer on the GPU by default when llama.cpp reports one.
            n_gpu_layers=number("model/n_gpu_layers")
            if self._settings.contains("model/n_gpu_layers")
            else (-1 if gpu_offload_supported() else 0),
        )
