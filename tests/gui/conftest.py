"""GUI fixtures: a main window with throw-away settings, sessions and logs."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")


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


@pytest.fixture
def with_model(qtbot, loaded):
    """The PBMC window with the bundled demo model loaded (one thread) and idle."""
    from c2s_desktop.core.model_store import demo_model_path
    from c2s_desktop.gui.engine_host import RunOptions

    # One thread: on a busy 2-core machine llama.cpp's thread pool spin-waits (7x slower).
    loaded.engine_host.set_options(RunOptions(threads=1))
    assert loaded.load_model(demo_model_path())
    qtbot.waitUntil(
        lambda: loaded.engine_host.is_loaded() and not loaded.runner.is_busy(), timeout=30_000
    )
    return loaded
