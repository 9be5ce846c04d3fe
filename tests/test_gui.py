"""The desktop window opens datasets off the GUI thread and reports bad files in a dialog."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from PySide6.QtWidgets import QMessageBox  # noqa: E402

from c2s_desktop.gui.main_window import MainWindow  # noqa: E402


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    from PySide6.QtCore import QSettings

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path))
    w = MainWindow()
    qtbot.addWidget(w)
    yield w
    if w.job is not None:
        qtbot.waitUntil(lambda: not w.job.is_running(), timeout=30_000)


def test_opens_real_dataset_in_background(qtbot, window, real_h5ad):
    window.open_file(real_h5ad)
    qtbot.waitUntil(lambda: window.dataset is not None, timeout=30_000)
    text = window.summary.toPlainText()
    assert "700 cells × 765 genes" in text and "X_umap" in text
    assert str(real_h5ad) in window.recent_files()


def test_bad_file_shows_dialog_with_message(qtbot, window, tmp_path):
    bad = tmp_path / "bad.h5ad"
    bad.write_text("not hdf5")
    window.open_file(bad)
    qtbot.waitUntil(lambda: window.findChild(QMessageBox) is not None, timeout=30_000)
    box = window.findChild(QMessageBox)
    assert "not an HDF5" in box.text() and "convert" in box.informativeText()
    assert window.dataset is None


def test_screenshot_flag(tmp_path, real_h5ad, qtbot):
    from c2s_desktop.gui.app import main

    shot = tmp_path / "shot.png"
    assert main([str(real_h5ad), "--screenshot", str(shot)]) == 0
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
