"""Every bad .h5ad opened in the real main window: an error dialog with the message, no
dataset, and the window still works (a good file opens afterwards)."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from PySide6.QtWidgets import QMessageBox  # noqa: E402

from .corpus import H5AD_CASES  # noqa: E402

T = 30_000
FAIL_ON_OPEN = [c for c in H5AD_CASES if not c.opens]


def _wait_for_dialog(qtbot, w) -> QMessageBox:
    qtbot.waitUntil(lambda: w.findChild(QMessageBox) is not None, timeout=T)
    qtbot.waitUntil(lambda: not w.runner.is_busy(), timeout=T)
    return w.findChild(QMessageBox)


@pytest.mark.parametrize("case", FAIL_ON_OPEN, ids=[c.id for c in FAIL_ON_OPEN])
def test_bad_file_shows_error_dialog_and_window_stays_usable(
    case, qtbot, window, tmp_path, real_h5ad
):
    bad = case.build(tmp_path)
    window.open_file(bad)
    box = _wait_for_dialog(qtbot, window)
    shown = f"{box.text()}\n{box.informativeText()}"
    assert case.phrase in shown, shown
    assert "Unexpected error" not in shown and "Traceback" not in shown
    assert box.informativeText(), "no hint"
    assert window.dataset is None
    box.close()
    box.deleteLater()
    qtbot.waitUntil(lambda: window.findChild(QMessageBox) is None, timeout=T)
    window.open_file(real_h5ad)
    qtbot.waitUntil(lambda: window.dataset is not None and not window.runner.is_busy(), timeout=T)
    assert window.dataset.n_cells == 700
    assert window.findChild(QMessageBox) is None
