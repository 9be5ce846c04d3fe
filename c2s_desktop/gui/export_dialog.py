"""Export results: an annotated copy of the .h5ad, a per-cell CSV and the HTML report.

The dialog proposes names next to the input with suffixes, refuses the input path itself, and
asks before replacing an existing file. Writing runs as a background job; every file is written
atomically and the input is only read. :func:`write_exports` is the Qt-free part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QGridLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import OutputError
from ..core.export_content import ExportContent, export_job, same_file
from ..core.results import TASK_ANNOTATE, TASK_EMBED, ModelRecord
from .actions import window_action
from .audit_jobs import audited
from .dialogs import show_error

EXPORT_SLOT = "export"
SUFFIXES = {"h5ad": "_c2s.h5ad", "csv": "_c2s.csv", "report": "_c2s_report.html"}
FILTERS = {"h5ad": "AnnData (*.h5ad)", "csv": "CSV (*.csv)", "report": "HTML (*.html)"}
LABELS = {
    "h5ad": "Annotated copy of the dataset (.h5ad)",
    "csv": "Per-cell results (CSV)",
    "report": "HTML report (figures, answers, provenance)",
}


# -- shared confirmations ----------------------------------------------------------------------
def refuse_input(parent: QWidget, path: Path) -> bool:
    """True (and a message) when ``path`` is the open dataset's file: it is never written."""
    dataset = getattr(parent, "dataset", None)
    if dataset is None or not same_file(path, dataset.path):
        return False
    parent.last_error = show_error(  # type: ignore[attr-defined]
        parent,
        "Cannot write there",
        OutputError(
            "is the input file; it is never overwritten",
            path=path,
            hint="choose another file name",
        ),
    )
    return True


def confirm_overwrite(parent: QWidget, paths: Sequence[Path]) -> bool:
    """Ask before replacing existing files; True when the user agrees."""
    names = "\n".join(str(p) for p in paths)
    answer = QMessageBox.question(
        parent,
        "Replace existing files?",
        f"These files already exist and will be replaced:\n\n{names}",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


def model_of(record: Mapping[str, str | None] | None) -> ModelRecord:
    """The provenance of a model from the engine host's record (file hash, or the server)."""
    if not record:
        return ModelRecord()
    if record.get("server"):
        return ModelRecord.of_server(record.get("name") or "", str(record["server"]))
    return ModelRecord(
        record.get("name") or "",
        record.get("sha256") or "",
        adapter=record.get("adapter") or "",
        adapter_sha256=record.get("adapter_sha256") or "",
    )


def _model_record(window: Any, host: Any) -> ModelRecord:
    """The model that made the results (recorded when they were made), else the loaded one."""
    made = getattr(window, "result_models", {}) or {}
    record = made.get(TASK_ANNOTATE) or made.get(TASK_EMBED)
    if record is None:
        return model_of(host.model_record() if host is not None and host.info else None)
    path = record.get("path")
    if not record.get("sha256") and host is not None and path and path == str(host.path):
        record = {**record, "sha256": host.sha256}  # hashed in the background afterwards
    return model_of(record)


# -- the dialog --------------------------------------------------------------------------------
class ExportDialog(QDialog):
    """Choose outputs and their names; proposes names next to the input."""

    def __init__(self, parent: QWidget, content: ExportContent) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export results")
        self.resize(720, 300)
        self.content = content
        self.checks: dict[str, QCheckBox] = {}
        self.paths: dict[str, QLineEdit] = {}
        grid = QGridLayout()
        src = content.input_path
        for i, kind in enumerate(SUFFIXES):
            check = QCheckBox(LABELS[kind])
            check.setChecked(True)
            edit = QLineEdit(str(src.with_name(src.stem + SUFFIXES[kind])))
            browse = QPushButton("Browse…")
            browse.clicked.connect(lambda _=False, k=kind: self._browse(k))
            check.toggled.connect(edit.setEnabled)
            grid.addWidget(check, i, 0)
            grid.addWidget(edit, i, 1)
            grid.addWidget(browse, i, 2)
            self.checks[kind], self.paths[kind] = check, edit
        self.summary = QLabel("Will export:\n" + content.describe())
        self.summary.setWordWrap(True)
        note = QLabel("The input file is only read; files are written completely or not at all.")
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addLayout(grid)
        layout.addWidget(note)
        layout.addWidget(self.buttons)

    def _browse(self, kind: str) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self,
            LABELS[kind],
            self.paths[kind].text(),
            FILTERS[kind],
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        if path:
            self.paths[kind].setText(path)

    def targets(self) -> dict[str, Path]:
        """The ticked outputs and their paths."""
        return {
            k: Path(self.paths[k].text().strip()).expanduser()
            for k, c in self.checks.items()
            if c.isChecked() and self.paths[k].text().strip()
        }


class ExportController(QObject):
    """File ▸ Export results… (Ctrl+Shift+E): the dialog, checks, and the background job."""

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.dialog: ExportDialog | None = None
        self.written: list[Path] = []
        self.action = window_action(
            window, "Export &results…", self.open_dialog, "Ctrl+Shift+E", "file"
        )

    def content(self) -> ExportContent | None:
        """What the window holds now (None without a dataset)."""
        w = self.window
        ds = w.dataset
        if ds is None:
            return None
        results = getattr(w, "results", {}) or {}
        assistant = getattr(w, "assistant", None)
        generator = getattr(w, "generator", None)
        host = getattr(w, "engine_host", None)
        names = list(ds.embedding_names())
        current = w.view.embedding_box.currentText() if hasattr(w, "view") else ""
        name = current if current in names else (names[0] if names else "")
        return ExportContent(
            input_path=Path(ds.path),
            cell_ids=np.asarray(ds.cell_ids),
            selection=np.asarray(w.selection.current, dtype=np.int64),
            embedding_name=name,
            annotate=results.get("annotate"),
            embed=results.get("embed"),
            conversations=list(assistant.conversations.values()) if assistant else [],
            generated=list(generator.sets) if generator else [],
            model=_model_record(w, host),
        )

    def open_dialog(self) -> ExportDialog | None:
        content = self.content()
        if content is None:
            self.window.status.setText("Open a dataset first, then export its results")
            return None
        self.dialog = ExportDialog(self.window, content)
        self.dialog.accepted.connect(lambda: self.export(self.dialog.targets()))
        self.dialog.open()
        return self.dialog

    def export(self, targets: dict[str, Path], content: ExportContent | None = None) -> bool:
        """Check ``targets`` (input refused, replacing confirmed), then write in the background."""
        w = self.window
        content = content or self.content()
        if content is None:
            return False
        if not targets:
            w.status.setText("Nothing chosen to export")
            return False
        for path in targets.values():
            if refuse_input(w, path):
                return False
        existing = [p for p in targets.values() if p.exists()]
        if existing and not confirm_overwrite(w, existing):
            w.status.setText("Export cancelled: nothing was replaced")
            return False
        if w.runner.is_busy(EXPORT_SLOT):
            w.status.setText("An export is still running")
            return False
        w.status.setText("Exporting…")
        w.runner.start(
            EXPORT_SLOT,
            audited(
                w,
                "export",
                export_job,
                params={"content": sorted(targets)},
                outputs=list(targets.values()),
                uses_model=False,
            ),
            content,
            dict(targets),
            bool(existing),
            w.dataset,
            on_success=self._done,
            on_failure=lambda exc: w.report_error(exc, "Export failed"),
        )
        return True

    def _done(self, written: list[Path]) -> None:
        self.written = list(written)
        self.window.status.setText("Exported: " + ", ".join(p.name for p in written))
