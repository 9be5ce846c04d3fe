"""Data panel: what was detected in the file, and the choices the user can change."""

from __future__ import annotations

from html import escape
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from ...core.dataset import ORGANISMS, Dataset, DatasetInfo
from ...core.genes import SYMBOLS_AUTO
from ...core.readers import FORMAT_NAMES

MERGED_SHOWN = 3


def describe(info: DatasetInfo) -> str:
    """The panel's summary (HTML) for ``info``."""
    rows = "".join(
        f"<tr><td>{escape(s.name)}{' ✓' if s.name == info.source else ''}</td>"
        f"<td>{escape(s.detail)}</td></tr>"
        for s in info.sources
    )
    emb = ", ".join(f"{k} ({d}-D)" for k, d in info.embeddings.items()) or "none"
    cols = ", ".join(f"{k} ({n})" for k, n in info.obs_columns.items()) or "none"
    warn = "".join(f"<li>{escape(w)}</li>" for w in info.warnings)
    return (
        f"<h3>{escape(Path(info.path).name)}</h3><p>{info.n_cells:,} cells × {info.n_genes:,} "
        f"genes{' (read from disk)' if info.backed else ''}"
        f"<br>{escape(FORMAT_NAMES.get(info.format, info.format))}</p>"
        f"<table>{rows}</table><p>Gene symbols: {escape(info.symbols_source)} "
        f"({info.symbols_mapped:,} genes)<br>"
        f"Organism: {escape(info.organism)} ({escape(info.organism_from)})<br>"
        f"Embeddings: {escape(emb)}<br>Categories: {escape(cols)}</p>"
        + (f"<ul>{warn}</ul>" if warn else "")
    )


class DataPanel(QWidget):
    """Summary of the open file plus source / symbol column / organism choices."""

    apply_requested = Signal(str, str, str)  # source, symbols, organism

    def __init__(self) -> None:
        super().__init__()
        self.summary = QTextBrowser(openExternalLinks=False)
        self.summary.setHtml(
            "<p>Open an .h5ad file or a Cell Ranger .h5 (File → Open, Ctrl+O), a Cell Ranger "
            "matrix folder (File → Open Cell Ranger folder…), or drop one here.</p>"
        )
        self.problem = QLabel(wordWrap=True)
        self.problem.setStyleSheet("color: #b00020")
        self.problem.hide()
        self.merged = QLabel(wordWrap=True)
        self.merged.hide()
        self.source_box, self.symbols_box, self.organism_box = QComboBox(), QComboBox(), QComboBox()
        self.organism_box.setEditable(False)
        self.apply_button = QPushButton("Apply")
        self.apply_button.setToolTip("Re-read the data with these choices")
        self.apply_button.clicked.connect(
            lambda: self.apply_requested.emit(
                self.source_box.currentText(),
                self.symbols_box.currentText(),
                self.organism_box.currentText(),
            )
        )
        form = QFormLayout()
        form.addRow("Expression", self.source_box)
        form.addRow("Gene symbols", self.symbols_box)
        form.addRow("Organism", self.organism_box)
        form.addRow(self.apply_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.problem)
        layout.addWidget(self.merged)
        layout.addWidget(self.summary, 1)
        layout.addLayout(form)
        self.set_enabled_choices(False)

    def set_enabled_choices(self, enabled: bool) -> None:
        for w in (self.source_box, self.symbols_box, self.organism_box, self.apply_button):
            w.setEnabled(enabled)

    def show_dataset(self, dataset: Dataset, info: DatasetInfo) -> None:
        """Show ``info`` and offer the alternatives the file allows."""
        self.problem.hide()
        self.summary.setHtml(describe(info))
        self.show_merged(info.duplicates_merged)
        sources = [s.name for s in info.sources if s.rankable]
        text_cols = [
            str(c)
            for c in dataset.gene_var.columns
            if dataset.gene_var[c].dtype == object or str(dataset.gene_var[c].dtype) == "category"
        ]
        choices = (
            (self.source_box, sources, info.source),
            (self.symbols_box, [SYMBOLS_AUTO, "var_names", *text_cols], info.symbols_source),
            (self.organism_box, list(dict.fromkeys([*ORGANISMS, info.organism])), info.organism),
        )
        for box, items, current in choices:
            box.clear()
            box.addItems(items)
            if box.findText(current) < 0:
                box.addItem(current)
            box.setCurrentText(current)
        self.set_enabled_choices(True)

    def show_merged(self, merged: list[str]) -> None:
        """The exact duplicate gene names that were summed (all of them in the tooltip)."""
        self.merged.setVisible(bool(merged))
        if not merged:
            self.merged.clear()
            self.merged.setToolTip("")
            return
        more = ", ..." if len(merged) > MERGED_SHOWN else ""
        self.merged.setText(
            f"{len(merged):,} gene names repeated, merged: {', '.join(merged[:MERGED_SHOWN])}{more}"
        )
        self.merged.setToolTip(
            "Columns with the same gene name are summed into one word:\n" + "\n".join(merged)
        )

    def show_problem(self, message: str) -> None:
        """Say in the panel why the file cannot be used as it is."""
        self.problem.setText(f"This file cannot be used as it is: {message}")
        self.problem.show()
