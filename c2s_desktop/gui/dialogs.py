"""Error dialogs: the core's message and hint for users; tracebacks go to the log file."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

from ..core.errors import C2SError
from ..core.logs import log_exception


def error_text(exc: BaseException) -> tuple[str, str]:
    """``(message, hint)`` for a dialog; unexpected errors are logged and point to the log."""
    if isinstance(exc, C2SError):
        text = f"{exc.path}\n\n{exc.message}" if exc.path else exc.message
        return text, exc.hint
    log = log_exception(exc, "GUI")
    where = f"Details were written to {log}" if log else "The log file could not be written."
    return f"Unexpected error: {exc.__class__.__name__}: {exc}", where


def show_error(parent: QWidget, title: str, exc: BaseException) -> QMessageBox:
    """Open a non-blocking warning dialog for ``exc`` (returned, e.g. for tests)."""
    text, hint = error_text(exc)
    box = QMessageBox(QMessageBox.Icon.Warning, title, text, parent=parent)
    box.setInformativeText(hint)
    box.open()
    return box
