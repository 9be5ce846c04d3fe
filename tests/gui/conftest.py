"""GUI fixtures: a main window with throw-away settings, sessions and logs; one demo-model
process shared by the windows that need a loaded model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("PySide6")

from c2s_desktop.gui.engine_host import RunOptions  # noqa: E402

# One thread: on a busy 2-core machine llama.cpp's thread pool spin-waits (7x slower).
_ONE_THREAD = RunOptions(threads=1)
DEMO_ALIAS = "c2s-desktop/demo-pbmc-tiny"  # the demo model's catalogue name


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Settings, sessions and the log file under ``tmp_path``."""
    from PySide6.QtCore import QSettings

    monkeypatch.setenv("C2S_SESSION_DIR", str(tmp_path / "sessions"))
    monkeypatch.setenv("C2S_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("C2S_MODELS_DIR", str(tmp_path / "models"))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "cfg"))
    return tmp_path


def _make_window(qtbot):
    from c2s_desktop.gui.main_window import MainWindow

    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    return w


@pytest.fixture
def make_window(qtbot, isolated):
    """Factory of shown main windows; waits for their jobs before they are dropped."""
    windows = []

    def make():
        windows.append(_make_window(qtbot))
        return windows[-1]

    yield make
    for w in windows:
        qtbot.waitUntil(lambda w=w: not w.runner.is_busy(), timeout=30_000)


@pytest.fixture
def window(make_window):
    return make_window()


@pytest.fixture
def loaded(qtbot, window, real_h5ad):
    """A window with the real PBMC file open and idle."""
    window.open_file(real_h5ad)
    qtbot.waitUntil(
        lambda: window.dataset is not None and not window.runner.is_busy(), timeout=30_000
    )
    return window


@pytest.fixture
def models_dir(isolated):
    """The (empty) models folder of the isolated settings."""
    return isolated / "models"


class _Lease:
    """The shared model process handed to one window as its engine: every call goes to the
    process; unloading the model or closing the window hands it back instead of stopping it."""

    def __init__(self, engine: Any) -> None:
        self._shared = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._shared, name)

    def close(self) -> None:
        """The process outlives the window (the session fixture stops it)."""


@pytest.fixture(scope="session")
def demo_process() -> Iterator[Any]:
    """One process of the bundled demo model (one thread), started once for the GUI tests that
    need a loaded model (the per-test ``with_model`` windows lease it)."""
    from c2s_desktop.core.engine.process import ProcessEngine
    from c2s_desktop.core.model_store import demo_model_path
    from c2s_desktop.core.models import validate_gguf

    path = demo_model_path()
    engine = ProcessEngine(path, _ONE_THREAD.engine_options(validate_gguf(path)))
    yield engine
    engine.close()


def _load_demo(qtbot, window):  # noqa: ANN001, ANN202
    from c2s_desktop.core.model_store import demo_model_path

    window.engine_host.set_options(_ONE_THREAD)
    assert window.load_model(demo_model_path())
    qtbot.waitUntil(
        lambda: window.engine_host.is_loaded() and not window.runner.is_busy(), timeout=30_000
    )
    return window


@pytest.fixture
def with_model(qtbot, loaded, demo_process, monkeypatch):
    """The PBMC window with the bundled demo model loaded (one thread) and idle.

    The window loads it as always (background job, hash, remembered path) but is handed the
    session's demo process instead of starting one; a killed process is restarted first.
    Loading another file, other options or an adapter starts a process of its own."""
    from c2s_desktop.core.model_store import demo_model_path
    from c2s_desktop.gui import engine_host

    if demo_process.pid is None or not _alive(demo_process.pid):
        demo_process.restart()  # an earlier test killed or stopped it
    demo, start_own = demo_model_path(), engine_host._open_engine

    def open_engine(path, options, *rest):  # noqa: ANN001, ANN202
        from c2s_desktop.core.models import validate_gguf

        shared = not any(r is not None for r in rest) and Path(path) == demo
        if shared and options.engine_options(validate_gguf(path)) == demo_process._options:
            return _Lease(demo_process)
        return start_own(path, options, *rest)

    monkeypatch.setattr(engine_host, "_open_engine", open_engine)
    return _load_demo(qtbot, loaded)


@pytest.fixture
def with_own_model(qtbot, loaded):
    """As ``with_model``, with a model process of the window's own (for tests that stop it)."""
    return _load_demo(qtbot, loaded)


@pytest.fixture(scope="session")
def demo_server() -> Iterator[str]:
    """llama-cpp-python's server on the demo model under its catalogue name (no API key), on
    loopback, started once for the GUI tests that talk to a server."""
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")
    from c2s_desktop.core.model_store import demo_model_path
    from tests.engine.llama_server import llama_server

    with llama_server(demo_model_path(), alias=DEMO_ALIAS) as url:
        yield url


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            return not any(line.startswith("State:") and "Z" in line for line in f)
    except OSError:
        return False
