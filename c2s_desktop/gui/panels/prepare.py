"""Data ▸ Prepare dataset…: QC view with draggable thresholds, pipeline options, and the run.

The dialog shows histograms of genes per cell, counts per cell and % mitochondrial counts (QC
metrics computed off the GUI thread), the thresholds as draggable lines tied to spin boxes, and
"N of M cells remain" from the core's filter rule (:func:`passing_cells`). Run starts the
pipeline in a child process (:func:`run_preprocess_process`; Esc cancels) writing a new file in
the per-user data folder (``prepared/``, named from the input and a short hash of its content),
which is then opened in place of the input. Which input each prepared file came from is
remembered in QSettings, so reopening the input offers its prepared version.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ...core.dataset import KIND_COUNTS, Dataset
from ...core.errors import DataError
from ...core.preprocess import (
    CLUSTER_KEY,
    PREPROCESS_KEY,
    PreprocessOptions,
    PreprocessSummary,
    QCMetrics,
    input_sha256,
    passing_cells,
    qc_metrics,
    run_preprocess_process,
)
from ...core.progress import CancelToken, ProgressFn, check_cancel
from ...core.selection import session_dir
from ..actions import window_action

if TYPE_CHECKING:
    from ..context import Window

QC_SLOT = "qc"
PREPARE_SLOT = "prepare"
OPTIONS_KEY = "prepare/options"
MAP_KEY = "prepare/prepared_files"
SHORTCUT = "Ctrl+Shift+P"
LINE_PEN = pg.mkPen("#d62728", width=2)
HOVER_PEN = pg.mkPen("#ff7f0e", width=3)


# -- where prepared files go -----------------------------------------------------------------
def prepared_dir() -> Path:
    """The per-user folder of prepared datasets (``prepared/`` in the app's data folder)."""
    return session_dir() / "prepared"


def prepared_path(input_path: Path, digest: str) -> Path:
    """``prepared/<input name>-<short hash>.h5ad`` (never beside the input)."""
    p = Path(input_path)
    stem = p.name if p.is_dir() else p.name.split(".")[0] or p.stem
    return prepared_dir() / f"{stem}-{digest[:10]}.h5ad"


def prepare_file(
    input_path: Path,
    options: PreprocessOptions,
    progress: ProgressFn,
    cancel: CancelToken | None = None,
) -> PreprocessSummary:
    """Hash the input, then run the pipeline in a child process into its prepared file."""
    progress(-1.0, f"Reading {Path(input_path).name} to name the prepared file…")
    output = prepared_path(input_path, input_sha256(Path(input_path)))
    check_cancel(cancel)
    output.parent.mkdir(parents=True, exist_ok=True)
    return run_preprocess_process(
        input_path, output, options, overwrite=True, progress=progress, cancel=cancel
    )


def recorded_input(path: Path) -> str | None:
    """The input name recorded in a prepared file (``uns['c2s_preprocess']['input']``)."""
    import h5py

    with contextlib.suppress(OSError, KeyError, TypeError, ValueError), h5py.File(path, "r") as h5:
        value = h5["uns"][PREPROCESS_KEY]["input"][()]
        return value.decode() if isinstance(value, bytes) else str(value)
    return None


def has_counts(dataset: Dataset) -> bool:
    """Whether any matrix of the file holds integer counts (what QC and preparation need)."""
    return any(s.kind == KIND_COUNTS for s in dataset.sources.values())


def data_menu(window: Window) -> QMenu:
    """The window's Data menu (created before Selection on first use)."""
    menu = window.menus.get("data")
    if menu is None:
        menu = QMenu("&Data", window)
        before = window.menus.get("selection")
        bar = window.menuBar()
        if before is not None:
            bar.insertMenu(before.menuAction(), menu)
        else:
            bar.addMenu(menu)
        window.menus["data"] = menu
    return menu


# -- widgets ---------------------------------------------------------------------------------
class ThresholdHistogram(QWidget):
    """A histogram of one QC metric with movable vertical threshold lines."""

    moved = Signal(str, float)
    """A line was dragged: its name and new position."""

    def __init__(self, title: str, unit: str) -> None:
        super().__init__()
        self.plot = pg.PlotWidget(background="w")
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.setTitle(title, color="k", size="10pt")
        self.plot.setLabel("bottom", unit)
        self.plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.plot.setLabel("left", "cells")
        self.curve = pg.PlotDataItem(
            stepMode="center", fillLevel=0, brush=(70, 110, 180, 160), pen=pg.mkPen("#46a")
        )
        self.plot.addItem(self.curve)
        self.lines: dict[str, pg.InfiniteLine] = {}
        self._span = (0.0, 1.0)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)
        self.setMinimumSize(240, 180)

    def add_line(self, name: str, label: str) -> pg.InfiniteLine:
        line = pg.InfiniteLine(
            angle=90,
            movable=True,
            pen=LINE_PEN,
            hoverPen=HOVER_PEN,
            label=label,
            labelOpts={"position": 0.9, "color": "#d62728"},
        )
        line.sigPositionChanged.connect(lambda ln, n=name: self.moved.emit(n, float(ln.value())))
        self.plot.addItem(line, ignoreBounds=True)
        self.lines[name] = line
        return line

    def set_values(self, values: np.ndarray, bins: int = 60) -> None:
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        if not len(v):
            self.curve.setData([], [])
            return
        counts, edges = np.histogram(v, bins=bins)
        self.curve.setData(edges, counts)
        hi = float(edges[-1]) if edges[-1] > edges[0] else float(edges[0]) + 1
        self._span = (float(edges[0]), hi)
        for line in self.lines.values():  # bounds clamp the line: not a user's drag
            line.blockSignals(True)
            line.setBounds((min(0.0, float(edges[0])), None))
            line.blockSignals(False)
        self._fit()

    def _fit(self) -> None:
        """Show the data and every visible threshold (one may lie beyond the data)."""
        shown = [ln.value() for ln in self.lines.values() if ln.isVisible()]
        lo, hi = min([self._span[0], *shown]), max([self._span[1], *shown])
        self.plot.setXRange(lo, hi, padding=0.03)

    def set_line(self, name: str, value: float | None) -> None:
        """Place line ``name`` at ``value`` (hidden when None) without emitting ``moved``."""
        line = self.lines[name]
        line.setVisible(value is not None)
        if value is not None:
            line.blockSignals(True)
            line.setValue(float(value))
            line.blockSignals(False)
        if not line.moving:  # while dragging, the view stays put under the mouse
            self._fit()


def _spin(lo: int, hi: int, value: int, tip: str, special: str = "") -> QSpinBox:
    box = QSpinBox(minimum=lo, maximum=hi, value=value, toolTip=tip)
    box.setKeyboardTracking(True)
    if special:
        box.setSpecialValueText(special)
    return box


class PrepareDialog(QDialog):
    """QC histograms, thresholds and pipeline options; the controller computes and runs."""

    run_requested = Signal()
    options_changed = Signal()

    def __init__(self, parent: QWidget | None, options: PreprocessOptions) -> None:
        super().__init__(parent)
        self.setWindowTitle("Prepare this dataset")
        self.setObjectName("prepare_dialog")
        self.resize(980, 560)
        self.qc: QCMetrics | None = None
        self.genes_plot = ThresholdHistogram("Genes per cell", "genes detected")
        self.counts_plot = ThresholdHistogram("Counts per cell", "total counts")
        self.mito_plot = ThresholdHistogram("Mitochondrial counts", "% of counts")
        self.genes_plot.add_line("min_genes", "min")
        self.genes_plot.add_line("max_genes", "max")
        self.mito_plot.add_line("max_pct_mt", "max")
        plots = QHBoxLayout()
        for p in (self.genes_plot, self.counts_plot, self.mito_plot):
            plots.addWidget(p, 1)

        self.min_genes = _spin(0, 1_000_000, 0, "Cells with fewer genes detected are removed")
        self.max_genes = _spin(
            0, 1_000_000, 0, "Cells with more genes are removed (likely doublets)", "none"
        )
        self.max_pct_mt = QDoubleSpinBox(
            minimum=-1.0, maximum=100.0, singleStep=1.0, decimals=1, value=-1.0
        )
        self.max_pct_mt.setSpecialValueText("none")
        self.max_pct_mt.setToolTip("Cells with a higher % of mitochondrial counts are removed")
        self.min_cells = _spin(0, 1_000_000, 3, "Genes detected in fewer cells are dropped")
        self.n_top_genes = _spin(50, 100_000, 2000, "Highly variable genes used for the PCA")
        self.n_pcs = _spin(2, 500, 50, "Principal components for the neighbour graph")
        self.n_neighbors = _spin(2, 500, 15, "Neighbours per cell in the graph")
        self.resolution = QDoubleSpinBox(
            minimum=0.01, maximum=20.0, singleStep=0.1, decimals=2, value=1.0
        )
        self.resolution.setToolTip("Leiden resolution: higher gives more, smaller clusters")
        self.seed = _spin(0, 2**31 - 1, 0, "Random seed (PCA, UMAP, Leiden)")
        qc_form = QFormLayout()
        qc_form.addRow("Min genes per cell", self.min_genes)
        qc_form.addRow("Max genes per cell", self.max_genes)
        qc_form.addRow("Max % mito", self.max_pct_mt)
        qc_form.addRow("Min cells per gene", self.min_cells)
        qc_box = QGroupBox("Quality control")
        qc_box.setLayout(qc_form)
        grid = QGridLayout()
        for i, (label, w) in enumerate(
            (
                ("Highly variable genes", self.n_top_genes),
                ("PCs", self.n_pcs),
                ("Neighbours", self.n_neighbors),
                ("Leiden resolution", self.resolution),
                ("Seed", self.seed),
            )
        ):
            grid.addWidget(QLabel(label), i, 0)
            grid.addWidget(w, i, 1)
        pipe_box = QGroupBox("Normalise, PCA, neighbours, UMAP, Leiden, markers")
        pipe_box.setLayout(grid)

        self.remain = QLabel("Computing QC metrics…")
        self.remain.setStyleSheet("font-weight: bold")
        self.mito_info = QLabel("")
        self.mito_info.setWordWrap(True)
        self.defaults_button = QPushButton("Defaults")
        self.defaults_button.setToolTip("scanpy clustering tutorial defaults")
        self.run_button = QPushButton("Run")
        self.run_button.setDefault(True)
        self.run_button.setToolTip(
            "QC filter, normalise, PCA, neighbours, UMAP, Leiden and marker genes; the result "
            "is a new file (the input is not changed). Esc cancels."
        )
        self.close_button = QPushButton("Close")
        buttons = QHBoxLayout()
        buttons.addWidget(self.defaults_button)
        buttons.addStretch(1)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.close_button)
        options_row = QHBoxLayout()
        options_row.addWidget(qc_box, 1)
        options_row.addWidget(pipe_box, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(plots, 1)
        layout.addWidget(self.remain)
        layout.addWidget(self.mito_info)
        layout.addLayout(options_row)
        layout.addLayout(buttons)

        self.set_options(options)
        self.run_button.clicked.connect(self.run_requested)
        self.close_button.clicked.connect(self.reject)
        self.defaults_button.clicked.connect(lambda: self.set_options(PreprocessOptions()))
        for box in (self.min_genes, self.max_genes, self.max_pct_mt):
            box.valueChanged.connect(self._thresholds_changed)
        for box in (
            self.min_cells,
            self.n_top_genes,
            self.n_pcs,
            self.n_neighbors,
            self.resolution,
            self.seed,
        ):
            box.valueChanged.connect(lambda *_: self.options_changed.emit())
        self.genes_plot.moved.connect(self._line_moved)
        self.mito_plot.moved.connect(self._line_moved)

    # -- options ---------------------------------------------------------------------------
    def options(self) -> PreprocessOptions:
        """The options as shown ("none" = no limit)."""
        pct = self.max_pct_mt.value()
        return PreprocessOptions(
            min_genes=self.min_genes.value(),
            max_genes=self.max_genes.value() or None,
            max_pct_mt=None if pct < 0 else pct,
            min_cells=self.min_cells.value(),
            n_top_genes=self.n_top_genes.value(),
            n_pcs=self.n_pcs.value(),
            n_neighbors=self.n_neighbors.value(),
            resolution=self.resolution.value(),
            seed=self.seed.value(),
        )

    def set_options(self, o: PreprocessOptions) -> None:
        self.min_genes.setValue(o.min_genes)
        self.max_genes.setValue(o.max_genes or 0)
        self.max_pct_mt.setValue(-1.0 if o.max_pct_mt is None else o.max_pct_mt)
        self.min_cells.setValue(o.min_cells)
        self.n_top_genes.setValue(o.n_top_genes)
        self.n_pcs.setValue(o.n_pcs)
        self.n_neighbors.setValue(o.n_neighbors)
        self.resolution.setValue(o.resolution)
        self.seed.setValue(o.seed)
        self._thresholds_changed()

    # -- QC --------------------------------------------------------------------------------
    def show_qc(self, qc: QCMetrics | None) -> None:
        """Draw the histograms of ``qc`` (None: computing) and the remaining-cells count."""
        self.qc = qc
        if qc is None:
            self.remain.setText("Computing QC metrics…")
            return
        self.genes_plot.set_values(qc.n_genes_by_counts)
        self.counts_plot.set_values(qc.total_counts)
        self.mito_plot.set_values(qc.pct_counts_mt)
        self.mito_info.setText(
            f"QC from {qc.source}: {qc.n_mito_genes} mitochondrial genes"
            + (f" (prefix '{qc.mito_prefix}')" if qc.n_mito_genes else " — % mito is 0")
        )
        self._thresholds_changed()

    def remaining(self) -> tuple[int, int]:
        """(cells passing the thresholds, cells) by the core's filter rule; (0, 0) before QC."""
        if self.qc is None:
            return 0, 0
        mask = passing_cells(self.qc, self.options())
        return int(np.count_nonzero(mask)), int(len(mask))

    def _thresholds_changed(self, *_: object) -> None:
        o = self.options()
        self.genes_plot.set_line("min_genes", float(o.min_genes))
        self.genes_plot.set_line("max_genes", None if o.max_genes is None else float(o.max_genes))
        self.mito_plot.set_line("max_pct_mt", o.max_pct_mt)
        if self.qc is not None:
            kept, total = self.remaining()
            self.remain.setText(f"{kept:,} of {total:,} cells remain")
            self.remain.setStyleSheet(
                "font-weight: bold" + ("; color: #b00020" if kept == 0 else "")
            )
        self.options_changed.emit()

    def _line_moved(self, name: str, value: float) -> None:
        box = {"min_genes": self.min_genes, "max_genes": self.max_genes}.get(name)
        if box is not None:
            box.setValue(max(box.minimum() + (name == "max_genes"), int(round(value))))
        else:
            self.max_pct_mt.setValue(max(0.0, round(value, 1)))

    def keyPressEvent(self, event) -> None:  # noqa: N802, ANN001
        # Esc stops a running preparation (the window's shortcut) instead of closing the dialog.
        parent = self.parent()
        if event.key() == Qt.Key.Key_Escape and parent is not None:
            runner = getattr(parent, "runner", None)
            if runner is not None and runner.is_busy(PREPARE_SLOT):
                parent.cancel_jobs()
                return
        super().keyPressEvent(event)


class PrepareBanner(QFrame):
    """The offer shown above the map: prepare this dataset, or open its prepared version."""

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("prepare_banner")
        self.setStyleSheet(
            "#prepare_banner { background: #fff6d5; border: 1px solid #e0c060; border-radius: 4px }"
        )
        self.text = QLabel("")
        self.text.setWordWrap(True)
        self.prepare_button = QPushButton("Prepare this dataset…")
        self.prepare_button.setToolTip(
            f"QC, filtering, normalisation, PCA, UMAP, Leiden clusters, marker genes ({SHORTCUT})"
        )
        self.open_button = QPushButton("Open the prepared version")
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 4, 8, 4)
        row.addWidget(self.text, 1)
        row.addWidget(self.open_button)
        row.addWidget(self.prepare_button)
        self.hide()

    def offer(self, text: str, prepared: Path | None) -> None:
        self.text.setText(text)
        self.open_button.setVisible(prepared is not None)
        self.open_button.setToolTip(str(prepared) if prepared is not None else "")
        self.show()


# -- controller ------------------------------------------------------------------------------
class PrepareController(QObject):
    """Data ▸ Prepare dataset…: the offer, the dialog, QC and pipeline jobs, the result."""

    prepared = Signal(object)
    """The pipeline finished (its PreprocessSummary); the output is being opened."""

    def __init__(self, window: Window) -> None:
        super().__init__(window)
        self.window = window
        self.settings = window.settings
        self.dialog: PrepareDialog | None = None
        self.summary: PreprocessSummary | None = None
        self.prepared_from: dict[str, str] = {}
        """Prepared file → input name, for the ones made in this run of the app."""
        self._qc_for: Dataset | None = None
        self._qc: QCMetrics | None = None
        self.action = window_action(
            window, "&Prepare dataset…", self.open_dialog, SHORTCUT, data_menu(window)
        )
        self.action.setToolTip("QC, clustering, UMAP and marker genes from the counts")
        self.action.setEnabled(False)
        self.banner = PrepareBanner()
        self.banner.prepare_button.clicked.connect(self.open_dialog)
        self.banner.open_button.clicked.connect(self.open_prepared)
        view_layout = window.view.layout()
        view_layout.insertWidget(1, self.banner)  # below the embedding/colour bar, above the map
        window.dataset_loaded.connect(self._dataset_loaded)
        window.dataset_closing.connect(lambda: window.runner.cancel(QC_SLOT))

    # -- remembered state ------------------------------------------------------------------
    def saved_options(self) -> PreprocessOptions:
        """The last options used (QSettings), else the core's defaults."""
        try:
            doc = json.loads(str(self.settings.value(OPTIONS_KEY, "{}")))
            names = {f.name for f in dataclasses.fields(PreprocessOptions)}
            return PreprocessOptions(**{k: v for k, v in dict(doc).items() if k in names})
        except (TypeError, ValueError):
            return PreprocessOptions()

    def _save_options(self, options: PreprocessOptions) -> None:
        self.settings.setValue(OPTIONS_KEY, json.dumps(dataclasses.asdict(options)))

    def _mapping(self) -> dict[str, str]:
        try:
            doc = json.loads(str(self.settings.value(MAP_KEY, "{}")))
        except (TypeError, ValueError):
            return {}
        return {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}

    def prepared_for(self, input_path: Path) -> Path | None:
        """The prepared file remembered for ``input_path`` (None when none or gone)."""
        value = self._mapping().get(str(Path(input_path).resolve()))
        return Path(value) if value and Path(value).is_file() else None

    def input_of(self, prepared: Path) -> str | None:
        """The input name a prepared file was made from (None if not a prepared file)."""
        key = str(Path(prepared).resolve())
        for src, out in self._mapping().items():
            if str(Path(out).resolve()) == key:
                return Path(src).name
        if key in self.prepared_from:
            return self.prepared_from[key]
        return recorded_input(Path(prepared)) if Path(prepared).is_file() else None

    def _remember(self, input_path: Path, output: Path) -> None:
        mapping = self._mapping()
        mapping[str(Path(input_path).resolve())] = str(Path(output).resolve())
        self.settings.setValue(MAP_KEY, json.dumps(mapping))

    # -- the offer -------------------------------------------------------------------------
    def _dataset_loaded(self) -> None:
        w = self.window
        ds = w.dataset
        self.banner.hide()
        if ds is None:
            return
        counts = has_counts(ds)
        self.action.setEnabled(counts)
        source = self.input_of(ds.path)
        if source is not None:
            self._show_prepared(ds, source)
            return
        prepared = self.prepared_for(ds.path)
        if prepared is not None:
            self.banner.offer(
                f"This file was prepared before: {prepared.name} has its QC, clusters, UMAP "
                "and marker genes.",
                prepared,
            )
        elif counts and not ds.embedding_names():
            self.banner.offer(
                "No map in this file yet. Prepare it: quality control, normalisation, "
                "clustering, UMAP and marker genes (a new file; this one is not changed).",
                None,
            )
            QTimer.singleShot(
                0,
                self,
                lambda: w.status.setText(
                    f"{ds.n_cells:,} cells × {ds.n_genes:,} genes — no embedding in the file: "
                    f"Prepare this dataset ({SHORTCUT})"
                ),
            )

    def _show_prepared(self, ds: Dataset, source: str) -> None:
        w = self.window
        w.setWindowTitle(f"{Path(ds.path).name} (prepared from {source}) — C2S Desktop")
        w.data_panel.summary.append(f"Prepared from {source}")
        view = w.view
        umap = [n for n in ds.embedding_names() if "umap" in n.lower()]
        if umap and view.embedding_box.currentText() != umap[0]:
            view.embedding_box.setCurrentText(umap[0])
        if CLUSTER_KEY in ds.obs.columns:
            view.colour_box.setCurrentText(CLUSTER_KEY)
        markers = getattr(w, "marker_view", None)
        if markers is not None:
            markers.show()

    def open_prepared(self) -> None:
        ds = self.window.dataset
        prepared = self.prepared_for(ds.path) if ds is not None else None
        if prepared is not None:
            self.window.open_file(prepared)

    # -- the dialog and QC -----------------------------------------------------------------
    def open_dialog(self) -> PrepareDialog | None:
        """Show the dialog for the open dataset and compute its QC metrics (once per file)."""
        w = self.window
        ds = w.dataset
        if ds is None:
            w.status.setText("Open a dataset first, then prepare it")
            return None
        if self.dialog is None:
            self.dialog = PrepareDialog(w, self.saved_options())
            self.dialog.run_requested.connect(self.run)
        dialog = self.dialog
        dialog.setWindowTitle(f"Prepare {Path(ds.path).name}")
        dialog.run_button.setEnabled(not w.runner.is_busy(PREPARE_SLOT))
        if self._qc_for is ds and self._qc is not None:
            dialog.show_qc(self._qc)
        else:
            dialog.show_qc(None)
            w.runner.start(
                QC_SLOT,
                qc_metrics,
                ds,
                on_success=lambda qc: self._qc_done(ds, qc),
                on_failure=self._qc_failed,
            )
        dialog.show()
        dialog.raise_()
        return dialog

    def _qc_done(self, ds: Dataset, qc: QCMetrics) -> None:
        self._qc_for, self._qc = ds, qc
        if self.dialog is not None and self.window.dataset is ds:
            self.dialog.show_qc(qc)

    def _qc_failed(self, exc: BaseException) -> None:
        if self.dialog is not None:
            self.dialog.remain.setText("QC metrics could not be computed")
            self.dialog.run_button.setEnabled(False)
        self.window.report_error(exc, "Cannot prepare this dataset")

    # -- running ---------------------------------------------------------------------------
    def run(self, options: PreprocessOptions | None = None) -> bool:
        """Start the pipeline on the open dataset (a child process); False if it did not start."""
        w = self.window
        ds = w.dataset
        if ds is None:
            return False
        if options is None:
            options = self.dialog.options() if self.dialog is not None else self.saved_options()
        if w.runner.is_busy(PREPARE_SLOT):
            w.status.setText("A preparation is already running: Esc cancels it")
            return False
        qc = self._qc if self._qc_for is ds else None
        if qc is not None and not np.any(passing_cells(qc, options)):
            w.report_error(
                DataError(
                    "these thresholds remove every cell",
                    path=ds.path,
                    hint="lower the minimum genes or raise the maximum genes / % mito",
                ),
                "Cannot prepare this dataset",
            )
            return False
        self._save_options(options)
        input_path = Path(ds.path)
        if self.dialog is not None:
            self.dialog.run_button.setEnabled(False)
            self.dialog.remain.setText(f"Preparing {input_path.name}… (Esc cancels)")
        w.status.setText(f"Preparing {input_path.name}… (Esc cancels)")
        w.runner.start(
            PREPARE_SLOT,
            prepare_file,
            input_path,
            options,
            on_success=lambda summary: self._done(input_path, summary),
            on_failure=self._failed,
        ).done.connect(self._ended)
        return True

    def cancel(self) -> None:
        self.window.runner.cancel(PREPARE_SLOT)

    def _ended(self) -> None:
        if self.dialog is not None and not self.window.runner.is_busy(PREPARE_SLOT):
            self.dialog.run_button.setEnabled(True)
            self.dialog._thresholds_changed()

    def _failed(self, exc: BaseException) -> None:
        self.window.report_error(exc, "Preparation failed")

    def _done(self, input_path: Path, summary: PreprocessSummary) -> None:
        self.summary = summary
        out = Path(summary.output)
        self._remember(input_path, out)
        self.prepared_from[str(out.resolve())] = input_path.name
        if self.dialog is not None:
            self.dialog.hide()
        self.window.status.setText(
            f"Prepared {summary.n_cells_kept:,} of {summary.n_cells_in:,} cells, "
            f"{summary.n_clusters} clusters — opening {out.name}"
        )
        self.prepared.emit(summary)
        self.window.open_file(out)
