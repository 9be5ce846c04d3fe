"""Export results: an annotated copy of the .h5ad, a per-cell CSV and the HTML report.

The dialog proposes names next to the input with suffixes, refuses the input path itself, and
asks before replacing an existing file. Writing runs as a background job; every file is written
atomically and the input is only read. :func:`write_exports` is the Qt-free part.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QKeySequence
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

from ..core.errors import DataError, OutputError
from ..core.export import (
    full_column,
    provenance,
    write_annotated_copy,
    write_table_csv,
)
from ..core.progress import CancelToken, ProgressFn, check_cancel, no_progress
from ..core.report import render_results, write_html
from ..core.session import Conversation, GeneratedSet
from ..core.tasks.annotate import AnnotateResult
from ..core.tasks.embed import EmbedResult
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
def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (the second need not exist)."""
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


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


def _model_record(window: Any, host: Any, info: Any) -> ModelRecord:
    """The model that made the results (recorded when they were made), else the loaded one."""
    made = getattr(window, "result_models", {}) or {}
    record = made.get("annotate") or made.get("embed")
    if record is None:
        return ModelRecord(info.name if info else "", (host.sha256 or "") if host else "")
    sha = record.get("sha256") or ""
    if not sha and host is not None and record.get("path") and record.get("path") == str(host.path):
        sha = host.sha256 or ""  # hashed in the background after the result was made
    if not sha and record.get("server"):
        sha = f"server {record['server']}"
    return ModelRecord(record.get("name") or "", sha)


# -- the Qt-free part --------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelRecord:
    """The model that produced the results (for provenance)."""

    name: str = ""
    sha256: str = ""


@dataclass
class ExportContent:
    """Everything the window holds that can be exported."""

    input_path: Path
    cell_ids: np.ndarray
    selection: np.ndarray
    embedding_name: str = ""
    annotate: AnnotateResult | None = None
    embed: EmbedResult | None = None
    conversations: list[Conversation] = field(default_factory=list)
    generated: list[GeneratedSet] = field(default_factory=list)
    model: ModelRecord = ModelRecord()

    @property
    def n_cells(self) -> int:
        return len(self.cell_ids)

    def describe(self) -> str:
        """What will be exported, in one line per kind."""
        lines = []
        if self.annotate is not None:
            lines.append(f"cell types for {len(self.annotate.rows):,} cells ({self.annotate.mode})")
        if self.embed is not None:
            lines.append(f"C2S embedding of {len(self.embed.rows):,} cells")
        answers = sum(len(c.turns) for c in self.conversations)
        if answers:
            lines.append(
                f"{answers} summaries/answers in {len(self.conversations)} conversation(s)"
            )
        cells = sum(len(g.sentences) for g in self.generated)
        if cells:
            lines.append(f"{cells} generated cells (sentences)")
        lines.append(f"current selection: {len(self.selection):,} cells")
        return "\n".join(lines)


def result_columns(content: ExportContent) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Per-cell obs columns and obsm arrays covering every cell."""
    n = content.n_cells
    obs: dict[str, Any] = {}
    obsm: dict[str, np.ndarray] = {}
    r = content.annotate
    if r is not None:
        obs["c2s_cell_type"] = full_column(n, r.rows, r.labels, None)
        obs["c2s_cell_type_prob"] = full_column(n, r.rows, r.probability, None)
        if r.clusters is not None:
            obs["c2s_cluster"] = full_column(n, r.rows, np.asarray(r.clusters).astype(str), None)
    e = content.embed
    if e is not None:
        emb = np.full((n, e.embedding.shape[1]), np.nan, dtype=np.float32)
        emb[e.rows] = e.embedding
        lay = np.full((n, 2), np.nan, dtype=np.float32)
        lay[e.rows] = e.layout
        obsm["X_c2s"], obsm["X_c2s_2d"] = emb, lay
    return obs, obsm


def uns_records(content: ExportContent) -> dict[str, dict[str, str]]:
    """Provenance records for ``uns['c2s']`` (input hashed once)."""
    base = provenance(
        content.input_path,
        "export",
        model_name=content.model.name,
        model_sha256=content.model.sha256,
    )
    records: dict[str, dict[str, str]] = {}

    def record(task: str, template_id: str, parameters: Mapping[str, Any]) -> dict[str, str]:
        params = json.dumps(dict(parameters), default=str, sort_keys=True)
        return {**base, "task": task, "template_id": template_id, "parameters": params}

    if content.annotate is not None:
        a = content.annotate
        records["annotate"] = record(
            "annotate",
            a.template_id,
            {"mode": a.mode, "n_genes": a.n_genes, "candidates": list(a.candidates)},
        )
    if content.embed is not None:
        records["embed"] = record("embed", content.embed.template_id, {})
    turns = [t for c in content.conversations for t in c.turns]
    if turns:
        rec = record("assistant", ", ".join(sorted({t.template_id for t in turns})), {})
        rec["conversations"] = json.dumps(
            [asdict(c) for c in content.conversations if c.turns], ensure_ascii=False
        )
        records["assistant"] = rec
    if content.generated:
        rec = record(
            "generate",
            "",
            {"sets": [{"cell_type": g.cell_type, **g.parameters} for g in content.generated]},
        )
        rec["sentences"] = json.dumps([s for g in content.generated for s in g.sentences])
        records["generate"] = rec
    return records


def csv_columns(content: ExportContent, obs: Mapping[str, Any]) -> dict[str, Sequence[Any]]:
    """``cell_id``, selection membership and each per-cell result."""
    selected = np.zeros(content.n_cells, dtype=np.int8)
    selected[content.selection] = 1
    columns: dict[str, Sequence[Any]] = {"cell_id": content.cell_ids, "selected": selected}
    for name, values in obs.items():
        columns[name] = np.asarray(values, dtype=object)
    if content.embed is not None:
        lay = np.full((content.n_cells, 2), np.nan, dtype=np.float32)
        lay[content.embed.rows] = content.embed.layout
        columns["c2s_x"], columns["c2s_y"] = lay[:, 0], lay[:, 1]
    return columns


def write_exports(
    content: ExportContent,
    targets: Mapping[str, Path],
    overwrite: bool,
    plot_embedding: np.ndarray | None = None,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
    dataset: Any = None,
) -> list[Path]:
    """Write the chosen outputs (``targets`` keys: h5ad, csv, report); returns their paths.

    With the open ``dataset``, the report also shows its labels, QC and marker dot plots."""
    if not targets:
        raise DataError("nothing chosen to export", hint="tick at least one output")
    for path in targets.values():
        if same_file(path, content.input_path):
            raise OutputError("is the input file", path=path, hint="choose another output name")
    progress(0.0, "export: hashing the input (provenance)")
    records = uns_records(content)
    obs, obsm = result_columns(content)
    written: list[Path] = []
    if "h5ad" in targets:
        check_cancel(cancel)
        progress(0.2, "export: writing the annotated copy")
        written.append(
            write_annotated_copy(
                content.input_path,
                targets["h5ad"],
                obs=obs,
                obsm=obsm,
                uns=records,
                overwrite=overwrite,
            )
        )
    if "csv" in targets:
        check_cancel(cancel)
        progress(0.6, "export: writing the CSV")
        written.append(
            write_table_csv(targets["csv"], csv_columns(content, obs), overwrite=overwrite)
        )
    if "report" in targets:
        check_cancel(cancel)
        progress(0.8, "export: writing the report")
        frame = pd.DataFrame(obs, index=pd.Index(content.cell_ids.astype(str)))
        figures = dict(obsm)
        if plot_embedding is not None and content.embedding_name:
            figures = {content.embedding_name: plot_embedding, **figures}
        html_text = render_results(
            content.input_path.name, frame, figures, records, dataset=dataset, cancel=cancel
        )
        written.append(write_html(html_text, targets["report"], overwrite=overwrite))
    progress(1.0, "export: done")
    return written


def _export_job(
    content: ExportContent,
    targets: dict[str, Path],
    overwrite: bool,
    dataset: Any,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> list[Path]:
    xy = None
    if content.embedding_name and "report" in targets:
        xy = dataset.embedding(content.embedding_name)
    return write_exports(
        content, targets, overwrite, xy, progress=progress, cancel=cancel, dataset=dataset
    )


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
        self.action = QAction("Export &results…", window)
        self.action.setShortcut(QKeySequence("Ctrl+Shift+E"))
        self.action.triggered.connect(self.open_dialog)
        window.addAction(self.action)
        menu = getattr(window, "menus", {}).get("file")
        if menu is not None:
            menu.addAction(self.action)

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
        info = host.info if host is not None else None
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
            model=_model_record(w, host, info),
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
                _export_job,
                params={"content": sorted(targets)},
                outputs=list(targets.values()),
                uses_model=False,
            ),
            content,
            dict(targets),
            bool(existing),
            w.dataset,
            on_success=self._done,
            on_failure=lambda exc: w._failed(exc, "Export failed"),
        )
        return True

    def _done(self, written: list[Path]) -> None:
        self.written = list(written)
        self.window.status.setText("Exported: " + ", ".join(p.name for p in written))
