"""Annotate dock: cells (selection or all), mode, candidates, estimate, progress, results.

The controller runs :func:`~c2s_desktop.core.tasks.annotate.annotate` as the window's "model"
job. Before a long run it shows the estimate (cells to score × seconds per cell, measured on the
first cell or remembered for the loaded model). Results become the in-memory obs columns
``c2s_cell_type`` / ``c2s_cell_type_prob`` (the input file is never written), a label table and
a low-confidence filter.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PySide6.QtCore import QObject, QSettings, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...core.results import CELL_TYPE, CELL_TYPE_PROB, TASK_ANNOTATE, annotate_obs
from ...core.tasks.annotate import (
    CLUSTERS_KMEANS,
    MODE_AUTO,
    MODE_PER_CELL,
    MODE_REPRESENTATIVE,
    AnnotateOptions,
    AnnotateResult,
    annotate,
    estimate_text,
    scored_cell_count,
)
from ..audit_jobs import audited, job_params
from ..engine_host import MODEL_SLOT

if TYPE_CHECKING:
    from ..context import Window

LABEL_COLUMN = CELL_TYPE
PROB_COLUMN = CELL_TYPE_PROB
CANDIDATES_OBS = "obs column"
CANDIDATES_TYPED = "typed list"
CANDIDATES_MODEL = "let the model propose"
CONFIRM_SECONDS = 60.0
"""Runs estimated longer than this ask before starting."""
_MEASURE_LABELS = tuple(f"cell type {i}" for i in range(10))


class AnnotatePanel(QWidget):
    """The dock's widgets; the controller fills and reads them."""

    start_requested = Signal()
    cancel_requested = Signal()
    options_changed = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.scope_selection = QRadioButton("Selection")
        self.scope_all = QRadioButton("Whole dataset")
        self.scope_selection.setChecked(True)
        scope = QButtonGroup(self)
        for b in (self.scope_selection, self.scope_all):
            scope.addButton(b)
        self.mode_box = QComboBox()
        self.mode_box.addItems([MODE_AUTO, MODE_PER_CELL, MODE_REPRESENTATIVE])
        self.mode_box.setToolTip(
            "per-cell scores every cell; representative scores k cells per cluster and "
            "gives the others the vote of their nearest scored cells; auto picks by size"
        )
        self.cluster_box = QComboBox(toolTip="Clusters for representative mode")
        self.k_spin = QSpinBox(minimum=1, maximum=100, value=5, toolTip="cells scored per cluster")
        self.candidates_box = QComboBox()
        self.candidates_box.addItems([CANDIDATES_OBS, CANDIDATES_TYPED, CANDIDATES_MODEL])
        self.candidates_obs = QComboBox(toolTip="obs column whose values are the candidates")
        self.candidates_edit = QPlainTextEdit(placeholderText="one cell type per line")
        self.candidates_edit.setMaximumHeight(110)
        self.estimate = QLabel("")
        self.estimate.setWordWrap(True)
        self.start_button = QPushButton("Annotate")
        self.start_button.setToolTip("Annotate the cells (Ctrl+Shift+N)")
        self.cancel_button = QPushButton("Cancel")
        self.train_button = QPushButton("Train on these labels…")  # see panels/finetune.py
        self.progress = QProgressBar()
        self.progress_label = QLabel("")
        self.progress_label.setWordWrap(True)

        form = QFormLayout()
        scope_row = QHBoxLayout()
        scope_row.addWidget(self.scope_selection)
        scope_row.addWidget(self.scope_all)
        form.addRow("Cells", scope_row)
        form.addRow("Mode", self.mode_box)
        cluster_row = QHBoxLayout()
        cluster_row.addWidget(self.cluster_box, 1)
        cluster_row.addWidget(QLabel("k"))
        cluster_row.addWidget(self.k_spin)
        form.addRow("Clusters", cluster_row)
        form.addRow("Candidates", self.candidates_box)
        form.addRow("", self.candidates_obs)
        form.addRow(self.candidates_edit)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.train_button)
        settings = QGroupBox("Annotate cell types")
        box = QVBoxLayout(settings)
        box.addLayout(form)
        box.addWidget(self.estimate)
        box.addLayout(buttons)
        box.addWidget(self.progress)
        box.addWidget(self.progress_label)

        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Label", "Mean probability", "Cells"])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().hide()
        self.table.setToolTip("Double-click a label to select its cells")
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.threshold = QDoubleSpinBox(minimum=0.0, maximum=1.0, singleStep=0.05, value=0.5)
        self.threshold.setToolTip("Cells whose label probability is below this")
        self.low_button = QPushButton("Select low-confidence cells")
        low = QHBoxLayout()
        low.addWidget(QLabel("Probability <"))
        low.addWidget(self.threshold)
        low.addWidget(self.low_button, 1)
        results = QGroupBox("Results")
        rbox = QVBoxLayout(results)
        rbox.addWidget(self.summary)
        rbox.addWidget(self.table, 1)
        rbox.addLayout(low)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(settings)
        layout.addWidget(results, 1)

        self.start_button.clicked.connect(self.start_requested)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.candidates_box.currentTextChanged.connect(self._candidates_source)
        self.candidates_obs.currentTextChanged.connect(lambda _: self._candidates_source())
        for signal in (
            self.scope_selection.toggled,
            self.mode_box.currentTextChanged,
            self.cluster_box.currentTextChanged,
            self.k_spin.valueChanged,
            self.candidates_edit.textChanged,
        ):
            signal.connect(lambda *_: self.options_changed.emit())
        self.obs: pd.DataFrame | None = None
        self.set_running(False)
        self.show_result(None)

    # -- inputs --------------------------------------------------------------------------------
    def set_obs(self, obs: pd.DataFrame | None, categories: list[str]) -> None:
        """A new dataset's categorical obs columns (clusters, candidate sources)."""
        self.obs = obs
        keep = [c for c in categories if c not in (LABEL_COLUMN,)]
        for box, items in (
            (self.cluster_box, ["k-means on expression", *keep]),
            (self.candidates_obs, keep),
        ):
            box.blockSignals(True)
            box.clear()
            box.addItems(items)
            box.blockSignals(False)
        for guess in ("leiden", "louvain", "cluster", "clusters"):  # leiden: a prepared file
            if guess in keep:
                self.cluster_box.setCurrentText(guess)
                break
        for guess in ("cell_type", "celltype", "cell_types", "labels"):
            if guess in keep:
                self.candidates_obs.setCurrentText(guess)
                break
        if not keep and self.candidates_box.currentText() == CANDIDATES_OBS:
            self.candidates_box.setCurrentText(CANDIDATES_TYPED)
        self._candidates_source()

    def add_candidate_source(self, column: str) -> None:
        """Offer an obs column added in memory (e.g. renamed clusters) as candidate labels."""
        if self.candidates_obs.findText(column) < 0:
            self.candidates_obs.addItem(column)
        elif self.candidates_obs.currentText() == column:
            self._candidates_source()  # its values changed: refresh the candidate list

    def use_obs_candidates(self, column: str) -> None:
        """Candidates from the values of obs ``column`` (e.g. the labels a model was trained on)."""
        if self.candidates_obs.findText(column) >= 0:
            self.candidates_box.setCurrentText(CANDIDATES_OBS)
            self.candidates_obs.setCurrentText(column)

    def _candidates_source(self, *_: object) -> None:
        source = self.candidates_box.currentText()
        self.candidates_obs.setVisible(source == CANDIDATES_OBS)
        self.candidates_edit.setEnabled(source != CANDIDATES_MODEL)
        if source == CANDIDATES_OBS and self.obs is not None:
            col = self.candidates_obs.currentText()
            if col in self.obs.columns:
                values = self.obs[col].dropna().astype(str).unique()
                self.candidates_edit.setPlainText("\n".join(sorted(values)))
        self.options_changed.emit()

    def candidates(self) -> tuple[str, ...]:
        """The edited candidate list (empty when the model proposes them)."""
        if self.candidates_box.currentText() == CANDIDATES_MODEL:
            return ()
        lines = re.split(r"[\n;]", self.candidates_edit.toPlainText())
        return tuple(dict.fromkeys(s.strip() for s in lines if s.strip()))

    def cluster_key(self) -> str:
        if self.cluster_box.currentIndex() > 0:
            return self.cluster_box.currentText()
        return CLUSTERS_KMEANS

    # -- state ---------------------------------------------------------------------------------
    def set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.progress.setVisible(running)
        if running:
            self.progress.setRange(0, 0)
            self.progress_label.setText("starting…")

    def offer_resume(self, offer: bool) -> None:
        """After an interrupted run, the same settings continue where it stopped."""
        self.start_button.setText("Resume" if offer else "Annotate")
        self.start_button.setToolTip(
            "Continue the interrupted annotation: the cells already scored are kept "
            "(same cells, model and settings) (Ctrl+Shift+N)"
            if offer
            else "Annotate the cells (Ctrl+Shift+N)"
        )

    def show_progress(self, fraction: float, message: str) -> None:
        if fraction < 0:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * fraction))
        self.progress_label.setText(message)

    def show_result(self, result: AnnotateResult | None) -> None:
        enabled = result is not None
        self.low_button.setEnabled(enabled)
        self.threshold.setEnabled(enabled)
        self.table.setRowCount(0)
        if result is None:
            self.summary.setText("No annotation yet.")
            return
        labels = result.labels.astype(str)
        counts = result.counts()
        self.table.setRowCount(len(counts))
        for r, (label, n) in enumerate(counts.items()):
            mean = float(result.probability[labels == label].mean())
            for c, text in enumerate((label, f"{mean:.2f}", f"{n:,}")):
                item = QTableWidgetItem(text)
                if c:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                item.setData(Qt.ItemDataRole.UserRole, label)
                self.table.setItem(r, c, item)
        self.table.resizeColumnsToContents()
        scored = len(result.scored_rows)
        how = (
            f"{scored:,} representative cells scored, the rest by nearest neighbours"
            if result.mode == MODE_REPRESENTATIVE
            else f"{scored:,} cells scored"
        )
        self.summary.setText(
            f"{len(result.rows):,} cells, {len(counts)} labels ({how}); "
            f"{result.seconds_per_scored_cell:.3g} s per scored cell. "
            f"Column '{LABEL_COLUMN}' added (not saved to the input file)."
        )


class AnnotateController(QObject):
    """Starts annotation jobs for the window and puts their results into it."""

    finished = Signal(object)  # AnnotateResult

    def __init__(self, window: Window, panel: AnnotatePanel) -> None:
        super().__init__(window)
        self.window_, self.panel = window, panel
        self.settings: QSettings = window.settings
        self.confirm_box: QMessageBox | None = None
        self.last_estimate = ""
        panel.start_requested.connect(self.start)
        panel.cancel_requested.connect(self.cancel)
        panel.options_changed.connect(self.update_estimate)
        panel.options_changed.connect(lambda *_: panel.offer_resume(False))
        panel.low_button.clicked.connect(self.select_low_confidence)
        panel.table.itemDoubleClicked.connect(
            lambda item: self.select_label(item.data(Qt.ItemDataRole.UserRole))
        )
        window.engine_host.changed.connect(self.update_estimate)
        from .finetune import FinetuneController

        self.finetune = FinetuneController(window, panel.train_button)
        self.finetune.labels_trained.connect(panel.use_obs_candidates)

    def cancel(self) -> None:
        """Stop the running annotation; the cells scored so far are kept for a resume."""
        self.window_.runner.cancel(MODEL_SLOT)
        self.panel.offer_resume(True)
        self.window_.status.setText(
            "Annotation cancelled — the cells scored so far are kept: Resume continues"
        )

    def _watch(self, job) -> None:  # noqa: ANN001 - a jobs.Job
        """Reset the panel when the job's thread ends (a cancelled job reports nothing)."""
        runner = self.window_.runner

        def ended() -> None:
            if not runner.is_busy(MODEL_SLOT):
                self.panel.set_running(False)

        job.done.connect(ended)

    # -- what would run ------------------------------------------------------------------------
    def rows(self) -> np.ndarray | None:
        """The cells to annotate: the selection (when chosen and not empty) or None = all."""
        sel = self.window_.selection.current
        if self.panel.scope_selection.isChecked() and len(sel):
            return np.asarray(sel, dtype=np.int64)
        return None

    def options(self, rows: np.ndarray | None = None) -> AnnotateOptions:
        p = self.panel
        return AnnotateOptions(
            candidates=p.candidates(),
            mode=p.mode_box.currentText(),
            cluster_key=p.cluster_key(),
            per_cluster=p.k_spin.value(),
            rows=rows if rows is not None else self.rows(),
        )

    def _model_key(self) -> str | None:
        info = self.window_.engine_host.info
        if info is None:
            return None
        return f"annotate/seconds_per_cell/{info.name}-{info.file_type}-{info.size_bytes}"

    def seconds_per_cell(self) -> float | None:
        """The remembered figure for the loaded model (None until measured); for a server not
        measured yet, the rate its connection test measured."""
        key = self._model_key()
        value = self.settings.value(key) if key else None
        if value is None and self.window_.engine_host.server_url is not None:
            from .server import GROUP  # the connection test's figure (imports the HTTP client)

            value = self.settings.value(f"{GROUP}/seconds_per_cell")
        try:
            return float(value) if value is not None else None  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None

    def _remember_speed(self, seconds: float) -> None:
        key = self._model_key()
        if key and seconds > 0:
            self.settings.setValue(key, float(seconds))

    def scored_cells(self, options: AnnotateOptions) -> int:
        ds = self.window_.dataset
        return 0 if ds is None else scored_cell_count(ds, options)

    def estimate(self) -> tuple[str, float | None]:
        """``(text, seconds)`` for the current choices; seconds None when speed is unknown."""
        ds = self.window_.dataset
        if ds is None:
            return "Open a dataset first.", None
        options = self.options()
        n_rows = ds.n_cells if options.rows is None else len(options.rows)
        scored = self.scored_cells(options)
        what = f"{n_rows:,} cells" + (f", {scored:,} scored" if scored != n_rows else "")
        speed = self.seconds_per_cell()
        if speed is None:
            return f"{what}. Time estimate: measured on the first cell when you start.", None
        seconds = scored * speed
        advice = ""
        if scored == n_rows and n_rows > 2000:
            advice = " Representative mode would be much faster."
        return f"{what}. Estimate: {estimate_text(scored, speed)}.{advice}", seconds

    def update_estimate(self) -> None:
        self.last_estimate, _ = self.estimate()
        self.panel.estimate.setText(self.last_estimate)

    # -- running -------------------------------------------------------------------------------
    def start(self) -> None:
        """Check, load the model if needed, measure speed if unknown, confirm if long, run."""
        w = self.window_
        if not w.model_task_may_start("annotate"):
            return
        if (
            self.panel.candidates_box.currentText() != CANDIDATES_MODEL
            and not self.panel.candidates()
        ):
            w.status.setText("Give at least one candidate cell type (or let the model propose)")
            return
        if not w.engine_host.ensure(self._model_ready):
            w.no_model()

    def _model_ready(self) -> None:
        if self.seconds_per_cell() is None:
            self._measure()
        else:
            self._confirm()

    def _measure(self) -> None:
        w = self.window_
        assert w.dataset is not None
        rows = self.rows()
        first = np.asarray([0 if rows is None else rows[0]], dtype=np.int64)
        candidates = self.panel.candidates() or _MEASURE_LABELS
        options = AnnotateOptions(candidates=candidates, mode=MODE_PER_CELL, rows=first)
        self.panel.set_running(True)
        self.panel.progress_label.setText("measuring the speed on the first cell…")
        job = w.runner.start(
            MODEL_SLOT,
            self._run,
            w.dataset,
            options,
            on_success=lambda result: self._measured(result, job),
            on_failure=self._failed,
        )
        self._watch(job)

    def _measured(self, result: AnnotateResult, job) -> None:  # noqa: ANN001 - a jobs.Job
        self._remember_speed(result.seconds_per_scored_cell)
        self.update_estimate()
        job.done.connect(self._confirm)  # once its thread has ended: the model slot is free

    def _confirm(self) -> None:
        text, seconds = self.estimate()
        if seconds is None or seconds <= CONFIRM_SECONDS:
            self.run()
            return
        box = QMessageBox(QMessageBox.Icon.Question, "Annotate", text, parent=self.window_)
        box.setInformativeText("The window stays usable meanwhile; Cancel (Esc) stops it.")
        go = box.addButton("Start", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        go.clicked.connect(self.run)
        self.confirm_box = box
        box.open()

    def run(self) -> None:
        """Start the annotation job now (the model is loaded)."""
        w = self.window_
        if w.dataset is None:
            return
        if w.runner.is_busy(MODEL_SLOT):
            w.model_busy()
            return
        self.panel.set_running(True)
        ds = w.dataset
        options = self.options()
        job = w.runner.start(
            MODEL_SLOT,
            audited(w, "annotate", self._run, params=job_params(options)),
            ds,
            options,
            on_success=lambda result: self._done(result, ds),
            on_failure=self._failed,
        )
        job.progress.connect(self.panel.show_progress)
        self._watch(job)
        w.status.setText("Annotating…")

    def _run(self, dataset, options, progress, cancel) -> AnnotateResult:  # noqa: ANN001
        engine = self.window_.engine_host.engine()
        return annotate(dataset, engine, options, progress=progress, cancel=cancel)

    def _done(self, result: AnnotateResult, dataset: object) -> None:
        self.panel.set_running(False)
        self.panel.progress_label.setText("")
        if self.window_.dataset is not dataset:  # another file was opened meanwhile
            return
        self._remember_speed(result.seconds_per_scored_cell)
        self.panel.offer_resume(False)
        self.apply(result)
        self.update_estimate()
        self.finished.emit(result)

    def _failed(self, exc: BaseException) -> None:
        self.panel.set_running(False)
        self.panel.progress_label.setText("")
        self.panel.offer_resume(True)
        if not self.window_.engine_host.handle_failure(exc):
            self.window_.report_error(exc, "Annotation failed")

    # -- results -------------------------------------------------------------------------------
    def apply(self, result: AnnotateResult) -> None:
        """Add the result to the dataset's obs (in memory), the view and the results table."""
        w = self.window_
        ds = w.dataset
        if ds is None:
            return
        columns = annotate_obs(result, ds.n_cells)
        ds.obs[LABEL_COLUMN], ds.obs[PROB_COLUMN] = columns[LABEL_COLUMN], columns[PROB_COLUMN]
        w.set_result(TASK_ANNOTATE, result)
        w.add_obs_category(LABEL_COLUMN)
        self.panel.show_result(result)
        scoring = f" ({result.scoring})" if result.scoring else ""
        w.status.setText(
            f"Annotated {len(result.rows):,} cells: {len(result.counts())} labels in "
            f"'{LABEL_COLUMN}'{scoring}" + (f" — {result.warnings[0]}" if result.warnings else "")
        )

    def low_confidence_rows(self, threshold: float | None = None) -> np.ndarray:
        result = self.window_.results.get("annotate")
        if not isinstance(result, AnnotateResult):
            return np.zeros(0, dtype=np.int64)
        t = self.panel.threshold.value() if threshold is None else threshold
        return np.asarray(result.rows[result.probability < t], dtype=np.int64)

    def select_low_confidence(self) -> None:
        rows = self.low_confidence_rows()
        self.window_.set_selection(rows)
        self.window_.status.setText(
            f"{len(rows):,} cells with label probability < {self.panel.threshold.value():.2f}"
        )

    def select_label(self, label: str) -> None:
        result = self.window_.results.get("annotate")
        if isinstance(result, AnnotateResult):
            rows = result.rows[result.labels.astype(str) == label]
            self.window_.set_selection(np.asarray(rows, dtype=np.int64))
