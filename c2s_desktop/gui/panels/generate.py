"""Generate panel: cell type and sampling settings; generated sentences and a comparison plot of
reconstructed expression with real cells of the type (mean per gene)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ...core.tasks.generate import GenerateOptions
from .selection import _table, fill_table

GENERATED_COLOUR = "#1f77b4"
REAL_COLOUR = "#ff7f0e"


class GeneratePanel(QWidget):
    """Settings form, Generate / Cancel / Save, results table and comparison plot."""

    generate_requested = Signal()
    cancel_requested = Signal()
    save_requested = Signal()
    column_changed = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.column_box = QComboBox()
        self.column_box.setToolTip("obs column whose values name cell types")
        self.type_box = QComboBox()
        self.type_box.setEditable(True)
        self.type_box.setToolTip("Cell type to generate (pick one or type your own)")
        self.n_cells = QSpinBox(minimum=1, maximum=1000, value=10)
        self.temperature = QDoubleSpinBox(minimum=0.0, maximum=2.0, singleStep=0.1, value=1.0)
        self.top_k = QSpinBox(minimum=0, maximum=1000, value=50)
        self.top_p = QDoubleSpinBox(minimum=0.0, maximum=1.0, singleStep=0.05, value=0.95)
        self.max_tokens = QSpinBox(minimum=0, maximum=16384, value=0)
        self.max_tokens.setSpecialValueText("auto")
        self.max_tokens.setToolTip("Tokens per generated cell (auto: enough for the gene count)")
        self.seed = QSpinBox(minimum=0, maximum=2**31 - 1, value=0)
        form = QFormLayout()
        form.addRow("Types from", self.column_box)
        form.addRow("Cell type", self.type_box)
        form.addRow("Cells", self.n_cells)
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-k", self.top_k)
        form.addRow("Top-p", self.top_p)
        form.addRow("Max tokens", self.max_tokens)
        form.addRow("Seed", self.seed)
        self.generate_button = QPushButton("Generate")
        self.cancel_button = QPushButton("Cancel")
        self.save_button = QPushButton("Save as h5ad…")
        buttons = QHBoxLayout()
        for b in (self.generate_button, self.cancel_button, self.save_button):
            buttons.addWidget(b)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.info = QLabel("Reference for the inverse transform: the open dataset")
        self.info.setWordWrap(True)
        self.table = _table()
        self.plot = pg.PlotWidget(background="w")
        self.plot.setMinimumHeight(260)
        self.plot.addLegend(offset=(-10, -10))  # bottom right, beside the shortest bars
        self.plot.getAxis("left").setWidth(90)
        self.plot.setLabel("bottom", "mean log10 expression")
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.plot)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.info)
        layout.addWidget(split, 1)
        self.generate_button.clicked.connect(self.generate_requested)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.save_button.clicked.connect(self.save_requested)
        self.column_box.currentTextChanged.connect(self.column_changed)
        self.bars: list[pg.BarGraphItem] = []
        self.set_busy(False)
        self.save_button.setEnabled(False)

    def options(self, organism: str) -> GenerateOptions:
        """The form as :class:`GenerateOptions`."""
        return GenerateOptions(
            cell_type=self.type_box.currentText().strip(),
            n_cells=self.n_cells.value(),
            organism=organism,
            temperature=self.temperature.value(),
            top_k=self.top_k.value(),
            top_p=self.top_p.value(),
            seed=self.seed.value(),
            max_tokens=self.max_tokens.value() or None,
        )

    def set_columns(self, columns: Sequence[str], preferred: str = "") -> None:
        self.column_box.blockSignals(True)
        self.column_box.clear()
        self.column_box.addItems(list(columns))
        if preferred in columns:
            self.column_box.setCurrentText(preferred)
        self.column_box.blockSignals(False)

    def set_types(self, values: Sequence[str]) -> None:
        current = self.type_box.currentText()
        self.type_box.clear()
        self.type_box.addItems(list(values))
        if current and current in values:
            self.type_box.setCurrentText(current)

    def set_busy(self, busy: bool) -> None:
        self.generate_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.progress.setVisible(busy)
        if busy:
            self.progress.setValue(0)

    def show_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(1000 * max(0.0, fraction)))
        self.progress.setFormat(message)

    def show_sentences(
        self, sentences: Sequence[str], invalid: Sequence[int] | None = None
    ) -> None:
        """One row per generated cell: genes, invalid words, the sentence."""
        rows = [
            (
                str(i + 1),
                str(len(s.split()) if s else 0),
                "" if invalid is None else str(invalid[i]),
                s if len(s) < 400 else s[:400] + "…",
            )
            for i, s in enumerate(sentences)
        ]
        fill_table(self.table, ["cell", "genes", "invalid words", "sentence"], rows)

    def show_comparison(
        self, genes: Sequence[str], generated: np.ndarray, real: np.ndarray | None, cell_type: str
    ) -> None:
        """Side-by-side horizontal bars per gene (top gene first): mean reconstructed expression of
        the generated cells and mean expression of the real cells of the type."""
        for item in self.bars:
            self.plot.removeItem(item)
        self.bars = []
        legend = self.plot.plotItem.legend
        if legend is not None:
            legend.clear()
        y = -np.arange(len(genes), dtype=float)  # the top gene at the top
        height = 0.4 if real is not None else 0.8
        shift = height / 2 if real is not None else 0.0
        series = [("generated (reconstructed)", generated, GENERATED_COLOUR, y + shift)]
        if real is not None:
            series.append((f"real {cell_type} cells", real, REAL_COLOUR, y - shift))
        for label, values, colour, pos in series:
            bar = pg.BarGraphItem(
                x0=0, y=pos, width=np.asarray(values, float), height=height, brush=colour
            )
            self.plot.addItem(bar)
            self.bars.append(bar)
            if legend is not None:
                legend.addItem(bar, label)
        self.plot.getAxis("left").setTicks([[(float(v), g) for v, g in zip(y, genes, strict=True)]])
        self.plot.setLabel("left", "")
        self.plot.setLabel("bottom", "mean log10 expression")
        self.plot.setTitle(f"Top genes of the generated {cell_type} cells")
        self.plot.autoRange()
