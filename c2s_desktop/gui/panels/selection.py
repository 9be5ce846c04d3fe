"""Selection panel: count, composition, cell sentences, top genes, named selections, export."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from PySide6.QtCore import Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...core.markers import MarkerGene
from ...core.selection import composition


def fill_table(table: QTableWidget, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Replace the contents of a read-only table."""
    table.clear()
    table.setColumnCount(len(header))
    table.setHorizontalHeaderLabels(list(header))
    table.setRowCount(len(rows))
    for r, values in enumerate(rows):
        for c, value in enumerate(values):
            table.setItem(r, c, QTableWidgetItem(value))
    table.resizeColumnsToContents()


def _table() -> QTableWidget:
    table = QTableWidget()
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.verticalHeader().hide()
    return table


class SelectionPanel(QWidget):
    """Everything about the current selection; asks the window for sentences, genes and saves."""

    save_requested = Signal(str)
    restore_requested = Signal(str)
    delete_requested = Signal(str)
    export_requested = Signal()
    sentences_requested = Signal(int, int)  # cells, genes per sentence

    def __init__(self) -> None:
        super().__init__()
        self.obs = pd.DataFrame()
        self.rows = np.zeros(0, dtype=np.int64)
        self.count_label = QLabel("No cells selected")
        self.count_label.setStyleSheet("font-weight: bold")
        self.column_box = QComboBox(toolTip="Composition by this obs column")
        self.column_box.currentTextChanged.connect(lambda _: self._fill_composition())
        self.composition = _table()
        self.n_cells_spin = QSpinBox(minimum=1, maximum=100, value=5, prefix="cells: ")
        self.n_genes_spin = QSpinBox(minimum=5, maximum=5000, value=50, prefix="genes: ")
        for spin in (self.n_cells_spin, self.n_genes_spin):
            spin.valueChanged.connect(self.request_sentences)
        self.sentences = QPlainTextEdit(readOnly=True)
        self.sentences.setPlaceholderText("Cell sentences of the first selected cells")
        self.copy_button = QPushButton("Copy")
        self.copy_button.clicked.connect(
            lambda: QGuiApplication.clipboard().setText(self.sentences_text())
        )
        self.markers = _table()
        self.markers_status = QLabel(" ")
        self.name_edit = QLineEdit(placeholderText="name, e.g. B cells")
        self.name_edit.returnPressed.connect(self._save)
        save = QPushButton("Save selection")
        save.clicked.connect(self._save)
        self.saved = QListWidget(toolTip="Double-click to select these cells again")
        self.saved.itemDoubleClicked.connect(lambda it: self.restore_requested.emit(it.text()))
        delete = QPushButton("Delete")
        delete.clicked.connect(self._delete)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(self.export_requested)

        layout = QVBoxLayout(self)
        layout.addWidget(self.count_label)
        layout.addWidget(self._group("Composition", self.column_box, self.composition))
        sentence_bar = QHBoxLayout()
        for w in (self.n_cells_spin, self.n_genes_spin, self.copy_button):
            sentence_bar.addWidget(w)
        layout.addWidget(self._group("Cell sentences", sentence_bar, self.sentences))
        layout.addWidget(self._group("Top genes vs rest", self.markers_status, self.markers))
        name_bar, saved_bar = QHBoxLayout(), QHBoxLayout()
        name_bar.addWidget(self.name_edit, 1)
        name_bar.addWidget(save)
        saved_bar.addWidget(delete)
        saved_bar.addWidget(self.export_button)
        layout.addWidget(self._group("Saved selections", name_bar, self.saved, saved_bar))

    @staticmethod
    def _group(title: str, *parts: QWidget | QHBoxLayout) -> QGroupBox:
        box = QGroupBox(title)
        inner = QVBoxLayout(box)
        for part in parts:
            if isinstance(part, QHBoxLayout):
                inner.addLayout(part)
            else:
                inner.addWidget(part)
        return box

    def set_obs(self, obs: pd.DataFrame, categories: Sequence[str]) -> None:
        """A new dataset: its obs table and the columns offered for composition."""
        self.obs = obs
        self.column_box.blockSignals(True)
        self.column_box.clear()
        self.column_box.addItems(list(categories))
        self.column_box.blockSignals(False)
        self.saved.clear()
        self.show_selection(np.zeros(0, dtype=np.int64))

    def show_selection(self, rows: np.ndarray) -> None:
        """Show the count and composition of ``rows``; sentences and genes follow separately."""
        self.rows = rows
        n = len(rows)
        self.count_label.setText(f"{n:,} cells selected" if n else "No cells selected")
        self._fill_composition()
        self.sentences.setPlainText("")
        self.show_markers([], "select cells to see their top genes" if not n else "computing…")
        self.export_button.setEnabled(bool(n))

    def _fill_composition(self) -> None:
        column = self.column_box.currentText()
        if not column or not len(self.rows):
            fill_table(self.composition, ["category", "cells", "%", "of all"], [])
            return
        counts = composition(self.obs[column], self.rows)
        rows = [
            [c.category, f"{c.n_selected:,}", f"{100 * c.fraction:.1f}", f"{c.n_total:,}"]
            for c in counts
        ]
        fill_table(self.composition, ["category", "cells", "%", "of all"], rows)

    def request_sentences(self) -> None:
        if len(self.rows):
            self.sentences_requested.emit(self.n_cells_spin.value(), self.n_genes_spin.value())

    def show_sentences(self, cell_ids: Sequence[str], sentences: Sequence[str]) -> None:
        text = "\n\n".join(f"{c}: {s}" for c, s in zip(cell_ids, sentences, strict=True))
        self.sentences.setPlainText(text)

    def sentences_text(self) -> str:
        return self.sentences.toPlainText()

    def show_markers(self, genes: Sequence[MarkerGene], status: str = "") -> None:
        header = ["gene", "log2 FC", "mean in", "mean out", "% in", "% out"]
        rows = [
            [
                g.gene,
                f"{g.log2_fc:.2f}",
                f"{g.mean_in:.2f}",
                f"{g.mean_out:.2f}",
                f"{100 * g.frac_in:.0f}",
                f"{100 * g.frac_out:.0f}",
            ]
            for g in genes
        ]
        fill_table(self.markers, header, rows)
        self.markers_status.setText(status or f"{len(genes)} genes, ranked by mean difference")

    def set_saved(self, names: Sequence[str]) -> None:
        self.saved.clear()
        self.saved.addItems(list(names))

    def _save(self) -> None:
        self.save_requested.emit(self.name_edit.text())

    def _delete(self) -> None:
        item = self.saved.currentItem()
        if item is not None:
            self.delete_requested.emit(item.text())
