"""The audit log viewer: the most recent jobs, newest first (Help → Audit log)."""

from __future__ import annotations

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core import audit

COLUMNS = (
    ("time", "Time (UTC)"),
    ("task", "Task"),
    ("status", "Status"),
    ("input", "Input"),
    ("model", "Model"),
    ("outputs", "Output"),
    ("duration", "Duration"),
)


class AuditDialog(QDialog):
    """A table of the last ``limit`` audit entries with *Refresh* and *Open folder*.

    Hovering a row shows its files' full paths and sha256 sums.
    """

    def __init__(self, parent: QWidget | None = None, limit: int = 500) -> None:
        super().__init__(parent)
        self.setWindowTitle("Audit log")
        self.resize(900, 420)
        self.limit = limit
        self.location = QLabel()
        self.location.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([title for _, title in COLUMNS])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        self.folder_button = QPushButton("Open folder")
        self.folder_button.clicked.connect(self.open_folder)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.refresh_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(self.folder_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.location)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the log file."""
        path = audit.audit_path()
        entries = list(reversed(audit.read_entries(self.limit)))
        self.location.setText(
            f"{path} — {len(entries)} most recent jobs. The log names files and their sha256, "
            "never their contents."
        )
        self.table.setRowCount(len(entries))
        for row, entry in enumerate(entries):
            values = audit.summary(entry)
            tip = _tooltip(entry)
            for col, (key, _) in enumerate(COLUMNS):
                item = QTableWidgetItem(values[key])
                item.setToolTip(tip)
                self.table.setItem(row, col, item)

    def folder_url(self) -> QUrl:
        """The folder holding the log, as a local-file URL."""
        return QUrl.fromLocalFile(str(audit.audit_path().parent))

    def open_folder(self) -> None:
        """Show the log's folder in the system file manager."""
        audit.audit_path().parent.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(self.folder_url())


def _tooltip(entry: dict) -> str:
    lines = [f"{i.get('path')}  sha256 {i.get('sha256')}" for i in entry.get("inputs") or []]
    model = entry.get("model") or {}
    if model:
        lines.append(f"model {model.get('path')}  sha256 {model.get('sha256')}")
    elif entry.get("engine"):
        lines.append(f"engine {entry['engine']}")
    if entry.get("error"):
        lines.append(f"error: {entry['error']}")
    return "\n".join(lines)
