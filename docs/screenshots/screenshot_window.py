"""The start every screenshot script shares: offscreen Qt, throw-away folders, the main window."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any


def open_main_window(width: int, height: int) -> tuple[Any, Any, Path]:
    """Offscreen Qt with throw-away session, models and settings folders, and a shown main
    window of ``width`` x ``height``: (the application, the window, the throw-away folder)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    tmp = Path(tempfile.mkdtemp(prefix="c2s-screens-"))
    os.environ["C2S_SESSION_DIR"] = str(tmp)
    os.environ["C2S_MODELS_DIR"] = str(tmp / "models")
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from c2s_desktop.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp))
    window = MainWindow()
    window.resize(width, height)
    window.show()
    return app, window, tmp
