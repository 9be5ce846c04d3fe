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
