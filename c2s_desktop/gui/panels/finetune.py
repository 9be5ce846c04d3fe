"""Tasks ▸ Train on these labels…: LoRA fine-tuning of the model's base checkpoint on an obs column.

The dialog (opened from the annotate dock) shows the label column, the cells (all or the
selection), the base checkpoint folder (remembered per model), the split the core plans
(:func:`plan_split`: train / held-out cells per label, or its refusal), a time estimate from
a measured step (:func:`measure_step`, off the GUI thread) and, while training runs in a child
process (:func:`run_finetune_process`), the loss per step and the held-out accuracy. Cancel keeps
the last checkpoint; Train again resumes from it. The adapter is written to
:func:`adapters_dir` (named from the base and the label column, never overwriting) and becomes
the active model: the base GGUF with the adapter, through the engine host.

Without torch/peft the action stays and says how to enable training.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...core.errors import C2SError, Cancelled
from ...core.finetune.workspace import (
    adapter_path,
    base_from_gguf,
    cell_list,
    measure_in_child,
    slug,
)
from ...core.finetune.workspace import guess_base as guess_base_of
from ...core.progress import duration_text
from ..actions import window_action

if TYPE_CHECKING:
    from ...core.finetune import FinetuneOptions, FinetuneResult, SplitPlan, StepReport
    from ..context import Window

TRAIN_SLOT = "finetune"
MEASURE_SLOT = "finetune-measure"
BASE_SLOT = "finetune-base"
STOP_WAIT_MS = 130_000
"""At window close, how long to wait for a training run to save its checkpoint and stop."""
SHORTCUT = "Ctrl+Shift+T"
STEP_KEY = "finetune/seconds_per_step"
"""QSettings group: a measured training step's seconds (base, rank, genes, batch size)."""
BASE_KEY = "finetune/base"
"""QSettings group: base checkpoint folder per model (``finetune/base/<model key>``)."""
ERROR_STYLE = "color: #b00020"


# -- helpers -----------------------------------------------------------------------------------
def _step_key(key: tuple) -> str:
    digest = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
    return f"{STEP_KEY}/{digest}"


def model_key(host: Any) -> str | None:
    """The settings key of the active model (its file name and size), None without one."""
    info = host.info
    if info is None or host.path is None:
        return None
    return slug(f"{Path(host.path).name}-{info.size_bytes}")


def guess_base(host: Any) -> Path | None:
    """The base checkpoint of the loaded model, when one is known (see the core's rule)."""
    if host.info is None or host.path is None:
        return None
    return guess_base_of(Path(host.path), host.info.metadata, host.sha256)


def split_rows(plan: SplitPlan) -> list[tuple[str, int, int]]:
    """(label, train cells, held-out cells) per label of a split plan."""
    return [
        (str(label), int(train), int(held))
        for label, train, held in zip(
            plan.labels, plan.train_counts, plan.holdout_counts, strict=True
        )
    ]


@dataclass(frozen=True)
class TrainRequest:
    """What one training run was started with (kept for Train again and the result)."""

    data_path: Path
    base_dir: Path
    out_path: Path
    options: FinetuneOptions
    base_gguf: Path | None


class StepRelay(QObject):
    """Carries the core's ``on_step`` reports from the worker thread to the GUI thread."""

    step = Signal(object)


# -- the dialog --------------------------------------------------------------------------------
class FinetuneDialog(QDialog):
    """The choices, the split, the estimate, the live plots and the result."""

    inputs_changed = Signal()
    train_requested = Signal()
    cancel_requested = Signal()
    measure_requested = Signal()
    export_requested = Signal()

    def __init__(self, parent: QWidget | None) -> None:
        super().__init__(parent)
        self.setObjectName("finetune_dialog")
        self.setWindowTitle("Train on these labels")
        self.resize(900, 640)
        self.label_box = QComboBox(toolTip="The obs column whose values the model learns")
        self.scope_all = QRadioButton("All cells")
        self.scope_selection = QRadioButton("Current selection")
        self.scope_all.setChecked(True)
        group = QButtonGroup(self)
        for b in (self.scope_all, self.scope_selection):
            group.addButton(b)
        self.base_edit = QLineEdit(placeholderText="folder with config.json and *.safetensors")
        self.base_edit.setToolTip(
            "The checkpoint the loaded GGUF was converted from (remembered for this model)"
        )
        self.base_button = QPushButton("Choose…")
        self.export_button = QPushButton("From the loaded model")
        self.export_button.setToolTip(
            "Make a checkpoint folder from the loaded GGUF (for a model you have only as GGUF)"
        )
        self.holdout = QDoubleSpinBox(minimum=0.05, maximum=0.5, singleStep=0.05, value=0.2)
        self.holdout.setToolTip("Fraction of each label's cells held out to measure accuracy")
        self.epochs = QSpinBox(minimum=1, maximum=100, value=3)
        self.rank = QSpinBox(minimum=1, maximum=256, value=8, toolTip="LoRA rank")
        self.lr = QDoubleSpinBox(minimum=1e-6, maximum=1.0, decimals=6, singleStep=1e-4)
        self.lr.setValue(1e-3)
        self.lr.setToolTip("Learning rate")
        self.n_genes = QSpinBox(minimum=0, maximum=4096, value=0, singleStep=25)
        self.n_genes.setSpecialValueText("model default")
        self.n_genes.setToolTip("Genes per cell sentence (fewer train faster)")

        form = QFormLayout()
        form.addRow("Label column", self.label_box)
        scope = QHBoxLayout()
        scope.addWidget(self.scope_all)
        scope.addWidget(self.scope_selection)
        form.addRow("Cells", scope)
        base_buttons = QHBoxLayout()
        base_buttons.addWidget(self.base_button)
        base_buttons.addWidget(self.export_button)
        base_buttons.addStretch(1)
        form.addRow("Base checkpoint", self.base_edit)
        form.addRow("", base_buttons)
        form.addRow("Held-out fraction", self.holdout)
        form.addRow("Epochs", self.epochs)
        form.addRow("LoRA rank", self.rank)
        form.addRow("Learning rate", self.lr)
        form.addRow("Genes per cell", self.n_genes)

        self.split_table = QTableWidget(0, 3)
        self.split_table.setHorizontalHeaderLabels(["Label", "Train", "Held out"])
        self.split_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.split_table.verticalHeader().hide()
        self.split_table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents
        )
        self.split_table.horizontalHeader().setStretchLastSection(True)
        self.split_note = QLabel("")
        self.split_note.setWordWrap(True)
        self.estimate = QLabel("")
        self.estimate.setWordWrap(True)
        self.measure_button = QPushButton("Measure a step")
        self.measure_button.setToolTip("Time one training step to estimate the run")

        left = QVBoxLayout()
        left.addLayout(form)
        split_box = QGroupBox("Split")
        split_layout = QVBoxLayout(split_box)
        split_layout.addWidget(self.split_table, 1)
        split_layout.addWidget(self.split_note)
        left.addWidget(split_box, 1)
        estimate_row = QHBoxLayout()
        estimate_row.addWidget(self.estimate, 1)
        estimate_row.addWidget(self.measure_button)
        left.addLayout(estimate_row)

        self.loss_plot = pg.PlotWidget(background="w")
        self.loss_plot.setMenuEnabled(False)
        self.loss_plot.setTitle("Training loss", color="k", size="10pt")
        self.loss_plot.setLabel("bottom", "step")
        self.loss_curve = self.loss_plot.plot([], [], pen=pg.mkPen("#46a", width=2))
        self.acc_plot = pg.PlotWidget(background="w")
        self.acc_plot.setMenuEnabled(False)
        self.acc_plot.setTitle("Held-out accuracy", color="k", size="10pt")
        self.acc_plot.setLabel("bottom", "step")
        self.acc_plot.setYRange(0.0, 1.0, padding=0.05)
        self.acc_curve = self.acc_plot.plot(
            [], [], pen=pg.mkPen("#d62728", width=2), symbol="o", symbolSize=6
        )
        self.progress = QProgressBar()
        self.progress_label = QLabel("")
        self.progress_label.setWordWrap(True)
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.train_button = QPushButton("Train")
        self.train_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop training; the last checkpoint is kept (Esc)")
        self.close_button = QPushButton("Close")
        right = QVBoxLayout()
        right.addWidget(self.loss_plot, 1)
        right.addWidget(self.acc_plot, 1)
        right.addWidget(self.progress)
        right.addWidget(self.progress_label)
        right.addWidget(self.result_label)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for b in (self.train_button, self.cancel_button, self.close_button):
            buttons.addWidget(b)
        right.addLayout(buttons)

        layout = QHBoxLayout(self)
        layout.addLayout(left, 1)
        layout.addLayout(right, 1)

        self.steps: list[tuple[int, float]] = []
        self.accuracy: list[tuple[int, float]] = []
        self.last: StepReport | None = None
        for w in (self.label_box,):
            w.currentIndexChanged.connect(self.inputs_changed)
        for b in (self.scope_all, self.scope_selection):
            b.toggled.connect(lambda on: on and self.inputs_changed.emit())
        for spin in (self.holdout, self.epochs, self.rank, self.lr, self.n_genes):
            spin.valueChanged.connect(self.inputs_changed)
        self.base_edit.editingFinished.connect(self.inputs_changed)
        self.base_button.clicked.connect(self.choose_base)
        self.train_button.clicked.connect(self.train_requested)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.measure_button.clicked.connect(self.measure_requested)
        self.export_button.clicked.connect(self.export_requested)
        self.close_button.clicked.connect(self.hide)
        self.set_running(False)

    # -- inputs --------------------------------------------------------------------------------
    def set_columns(self, columns: list[str]) -> None:
        current = self.label_box.currentText()
        self.label_box.blockSignals(True)
        self.label_box.clear()
        self.label_box.addItems(columns)
        if current in columns:
            self.label_box.setCurrentText(current)
        self.label_box.blockSignals(False)

    def choose_base(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self,
            "Base checkpoint folder (config.json, tokenizer, *.safetensors)",
            self.base_edit.text() or str(Path.home()),
        )
        if folder:
            self.set_base(Path(folder))

    def set_base(self, folder: Path | None) -> None:
        self.base_edit.setText("" if folder is None else str(folder))
        self.inputs_changed.emit()

    def base_dir(self) -> Path | None:
        text = self.base_edit.text().strip()
        return Path(text) if text else None

    # -- split and estimate --------------------------------------------------------------------
    def show_split(self, plan: SplitPlan | None, problem: str = "") -> None:
        """The plan's per-label counts, or the core's refusal in red (Train disabled)."""
        t = self.split_table
        rows = split_rows(plan) if plan is not None else []
        t.setRowCount(len(rows))
        for r, (label, train, held) in enumerate(rows):
            for c, value in enumerate((label, f"{train:,}", f"{held:,}")):
                item = QTableWidgetItem(value)
                if c:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                t.setItem(r, c, item)
        if plan is None:
            self.split_note.setText(problem)
            self.split_note.setStyleSheet(ERROR_STYLE)
        else:
            train = sum(r[1] for r in rows)
            held = sum(r[2] for r in rows)
            unlabelled = (
                f"; {plan.unlabelled:,} cells without a label left out" if plan.unlabelled else ""
            )
            self.split_note.setText(
                f"{len(rows)} labels: {train:,} cells to train on, {held:,} held out{unlabelled}"
            )
            self.split_note.setStyleSheet("")

    # -- running -------------------------------------------------------------------------------
    def set_running(self, running: bool) -> None:
        self.train_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.progress.setVisible(running)
        for w in (self.label_box, self.scope_all, self.scope_selection, self.base_edit):
            w.setEnabled(not running)
        for w in (self.base_button, self.export_button, self.holdout, self.epochs):
            w.setEnabled(not running)
        for w in (self.rank, self.lr, self.n_genes):
            w.setEnabled(not running)
        self.measure_button.setEnabled(not running)
        if running:
            self.progress.setRange(0, 0)

    def offer_resume(self, offer: bool) -> None:
        self.train_button.setText("Train again (resume)" if offer else "Train")
        self.train_button.setToolTip(
            "Continue from the last checkpoint (same data, base and options)" if offer else ""
        )

    def clear_plots(self) -> None:
        self.steps, self.accuracy, self.last = [], [], None
        self.loss_curve.setData([], [])
        self.acc_curve.setData([], [])

    def add_step(self, report: StepReport) -> None:
        """Plot one step's loss (and held-out accuracy when measured); move the bar."""
        self.last = report
        self.steps.append((int(report.step), float(report.loss)))
        x, y = zip(*self.steps, strict=True)
        self.loss_curve.setData(list(x), list(y))
        if report.heldout_accuracy is not None:
            self.accuracy.append((int(report.step), float(report.heldout_accuracy)))
            ax, ay = zip(*self.accuracy, strict=True)
            self.acc_curve.setData(list(ax), list(ay))
        total = max(1, int(report.total_steps))
        self.progress.setRange(0, total)
        self.progress.setValue(min(total, int(report.step)))
        left = max(0, total - int(report.step)) * float(report.seconds_per_step)
        acc = (
            ""
            if report.heldout_accuracy is None
            else f", held-out accuracy {report.heldout_accuracy:.0%}"
        )
        self.progress_label.setText(
            f"Step {report.step:,} of {total:,} (epoch {report.epoch}): loss "
            f"{report.loss:.3f}{acc}; {report.seconds_per_step:.2g} s per step, "
            f"~{duration_text(left)} left"
        )

    def keyPressEvent(self, event) -> None:  # noqa: N802, ANN001
        # Esc cancels a running training instead of closing the dialog.
        if event.key() == Qt.Key.Key_Escape and self.cancel_button.isEnabled():
            self.cancel_requested.emit()
            return
        super().keyPressEvent(event)


# -- the controller ----------------------------------------------------------------------------
class FinetuneController(QObject):
    """The "Train on these labels…" action, its dialog, the training job and the result."""

    trained = Signal(object)
    """A run finished (its FinetuneResult); the adapter is being loaded."""
    labels_trained = Signal(str)
    """The label column a finished run learnt (the annotate dock offers its values)."""

    def __init__(self, window: Window, button: QPushButton | None = None) -> None:
        super().__init__(window)
        self.window_ = window
        self.settings = window.settings
        self.dialog: FinetuneDialog | None = None
        self.hint_box: QMessageBox | None = None
        self.request: TrainRequest | None = None
        self.result: FinetuneResult | None = None
        self.file_columns: list[str] = []
        self.relay = StepRelay(self)
        self.relay.step.connect(self._step)
        self.action = window_action(window, "&Train on these labels…", self.open_dialog, SHORTCUT)
        self.action.setToolTip(
            "Fine-tune the model's base checkpoint on an obs column (LoRA adapter)"
        )
        self._add_to_menu()
        if button is not None:
            button.setToolTip(f"{self.action.toolTip()} ({SHORTCUT})")
            button.clicked.connect(self.open_dialog)
        window.dataset_loaded.connect(self._dataset_loaded)
        window.selection_changed.connect(self._selection_changed)
        window.engine_host.changed.connect(self._model_changed)
        window.installEventFilter(self)  # a closing window waits for training to stop

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        """Before the window closes, stop a training run and wait for it to save its
        checkpoint (its thread must end before the window is destroyed)."""
        if watched is self.window_ and event.type() == QEvent.Type.Close and self.running():
            job = self.window_.runner.current.get(TRAIN_SLOT)
            self.cancel()
            if job is not None:  # the thread ends once the run has returned
                job.thread.quit()
                job.thread.wait(STOP_WAIT_MS)
        return False

    def _add_to_menu(self) -> None:
        """Join the Tasks menu (built after the docks: wait for it once)."""
        tasks = self.window_.menus.get("tasks")
        if tasks is not None:
            tasks.addAction(self.action)
        else:
            QTimer.singleShot(0, self, self._add_to_menu)

    # -- availability and the dialog -----------------------------------------------------------
    def unavailable(self) -> str | None:
        """The core's hint when torch/peft/transformers are missing (None: training works)."""
        from ...core.finetune import train_available

        return train_available()

    def open_dialog(self) -> FinetuneDialog | None:
        """The dialog for the open dataset; without torch/peft, a message saying how to enable
        training instead."""
        w = self.window_
        hint = self.unavailable()
        if hint is not None:
            box = QMessageBox(
                QMessageBox.Icon.Information,
                "Training is not installed",
                "Training needs torch, peft and transformers, which this installation lacks.",
                parent=w,  # type: ignore[arg-type]
            )
            box.setInformativeText(hint)
            self.hint_box = box
            box.open()
            w.status.setText(f"Training is not installed: {hint}")
            return None
        if w.dataset is None:
            w.status.setText("Open a dataset first, then train on its labels")
            return None
        if self.dialog is None:
            self.dialog = FinetuneDialog(w)  # type: ignore[arg-type]
            self.dialog.inputs_changed.connect(self.update_split)
            self.dialog.train_requested.connect(self.train)
            self.dialog.cancel_requested.connect(self.cancel)
            self.dialog.measure_requested.connect(self.measure)
            self.dialog.export_requested.connect(self.export_base)
        d = self.dialog
        d.setWindowTitle(f"Train on the labels of {Path(w.dataset.path).name}")
        d.set_columns(self.columns())
        d.scope_selection.setEnabled(len(w.selection.current) > 0 and not self.running())
        if not len(w.selection.current):
            d.scope_all.setChecked(True)
        if not d.base_dir():
            d.base_edit.setText(str(self.remembered_base() or ""))
        host = w.engine_host
        d.export_button.setEnabled(host.path is not None and not self.running())
        self.update_split()
        d.show()
        d.raise_()
        return d

    def columns(self) -> list[str]:
        """Categorical obs columns of the file (labels the training can read from it)."""
        ds = self.window_.dataset
        if ds is None:
            return []
        present = set(map(str, ds.categorical_obs()))
        return [c for c in self.file_columns if c in present]

    def _dataset_loaded(self) -> None:
        ds = self.window_.dataset
        self.file_columns = [] if ds is None else list(map(str, ds.categorical_obs()))
        if self.dialog is not None and self.dialog.isVisible() and not self.running():
            self.dialog.set_columns(self.columns())
            self.update_split()

    def _selection_changed(self, *_: object) -> None:
        d = self.dialog
        if d is None or not d.isVisible() or self.running():
            return
        d.scope_selection.setEnabled(len(self.window_.selection.current) > 0)
        if d.scope_selection.isChecked():
            if not len(self.window_.selection.current):
                d.scope_all.setChecked(True)  # updates the split
            else:
                self.update_split()

    def _model_changed(self) -> None:
        d = self.dialog
        if d is not None and not self.running():
            d.export_button.setEnabled(self.window_.engine_host.path is not None)

    def remembered_base(self) -> Path | None:
        key = model_key(self.window_.engine_host)
        if key is not None:
            value = self.settings.value(f"{BASE_KEY}/{key}", "")
            if value and Path(str(value)).is_dir():
                return Path(str(value))
        return guess_base(self.window_.engine_host)

    def _remember_base(self, folder: Path) -> None:
        key = model_key(self.window_.engine_host)
        if key is not None:
            self.settings.setValue(f"{BASE_KEY}/{key}", str(folder))

    # -- the split and the estimate ------------------------------------------------------------
    def options(self) -> FinetuneOptions | None:
        """Options for the dialog's choices (None without a dataset or a label column)."""
        from ...core.finetune import FinetuneOptions

        w, d = self.window_, self.dialog
        if d is None or w.dataset is None or not d.label_box.currentText():
            return None
        cells = None
        if d.scope_selection.isChecked() and len(w.selection.current):
            rows = np.asarray(w.selection.current, dtype=np.int64)
            cells = str(cell_list(np.asarray(w.dataset.cell_ids)[rows]))
        return FinetuneOptions(
            label_key=d.label_box.currentText(),
            cells=cells,
            holdout=round(d.holdout.value(), 4),
            epochs=d.epochs.value(),
            rank=d.rank.value(),
            lr=d.lr.value(),
            n_genes=d.n_genes.value() or None,
        )

    def plan(self) -> SplitPlan | None:
        """The core's split for the dialog's choices, shown in the dialog (None: refused)."""
        from ...core.finetune import plan_split

        d, ds = self.dialog, self.window_.dataset
        if d is None or ds is None:
            return None
        try:
            options = self.options()
            if options is None:
                d.show_split(None, "Choose a label column (this file has no categorical obs)")
                return None
            plan = plan_split(ds, options)
        except C2SError as exc:
            d.show_split(None, exc.one_line())
            d.train_button.setEnabled(False)
            return None
        d.show_split(plan)
        if not self.running():
            d.train_button.setEnabled(True)
        return plan

    def update_split(self) -> None:
        plan = self.plan()
        self.show_estimate(plan)

    def _estimate_key(self, options: FinetuneOptions | None) -> tuple | None:
        d = self.dialog
        if d is None or options is None or d.base_dir() is None:
            return None
        return (str(d.base_dir()), options.rank, options.n_genes, options.batch_size)

    def total_steps(self, plan: SplitPlan, options: FinetuneOptions) -> int:
        batch = max(1, int(options.batch_size))
        steps = options.epochs * max(1, math.ceil(plan.n_train / batch))
        return min(steps, options.max_steps) if options.max_steps else steps

    def show_estimate(self, plan: SplitPlan | None) -> None:
        d = self.dialog
        if d is None:
            return
        if plan is None:
            d.estimate.setText("")
            return
        options = self.options()
        assert options is not None
        steps = self.total_steps(plan, options)
        seconds = self.measured(self._estimate_key(options))
        if d.base_dir() is None:
            d.estimate.setText(f"{steps:,} steps. Choose the base checkpoint folder.")
        elif seconds is None:
            d.estimate.setText(f"{steps:,} steps. Measure a step for a time estimate.")
        else:
            d.estimate.setText(
                f"{steps:,} steps × {seconds:.2g} s ≈ {duration_text(steps * seconds)} "
                "(measured here)"
            )

    def measured(self, key: tuple | None) -> float | None:
        """Seconds per step measured before for these inputs (remembered in QSettings)."""
        if key is None:
            return None
        value = self.settings.value(_step_key(key))
        try:
            return None if value is None else float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None

    def measure(self) -> None:
        """Time one training step off the GUI thread (:func:`measure_step`)."""
        w, d = self.window_, self.dialog
        options = self.options()
        key = self._estimate_key(options)
        if d is None or w.dataset is None or options is None or key is None:
            return
        if self.plan() is None:
            return
        base = d.base_dir()
        d.measure_button.setEnabled(False)
        d.estimate.setText("Measuring one training step…")
        job = w.runner.start(
            MEASURE_SLOT,
            measure_in_child,
            Path(w.dataset.path),
            base,
            options,
            on_success=lambda seconds: self._measured(key, float(seconds)),
            on_failure=self._measure_failed,
        )
        job.done.connect(lambda: d.measure_button.setEnabled(not self.running()))

    def _measured(self, key: tuple, seconds: float) -> None:
        self.settings.setValue(_step_key(key), seconds)
        if self.dialog is not None and self.dialog.base_dir() is not None:
            self._remember_base(self.dialog.base_dir())  # type: ignore[arg-type]
        self.update_split()

    def _measure_failed(self, exc: BaseException) -> None:
        if self.dialog is not None:
            self.dialog.estimate.setText("The step could not be measured")
        self.window_.report_error(exc, "Cannot measure a training step")

    def export_base(self) -> None:
        """Make the base checkpoint from the loaded GGUF (background; reused when made before)."""
        w, d = self.window_, self.dialog
        gguf_path = w.engine_host.path
        if d is None or gguf_path is None:
            w.status.setText("Load a model first: its GGUF becomes the base checkpoint")
            return
        d.export_button.setEnabled(False)
        d.split_note.setText(f"Making a checkpoint folder from {Path(gguf_path).name}…")
        d.split_note.setStyleSheet("")
        job = w.runner.start(
            BASE_SLOT,
            base_from_gguf,
            Path(gguf_path),
            on_success=self._base_made,
            on_failure=lambda exc: w.report_error(exc, "Cannot make a base checkpoint"),
        )
        job.done.connect(lambda: d.export_button.setEnabled(not self.running()))

    def _base_made(self, folder: Path) -> None:
        if self.dialog is not None:
            self.dialog.set_base(folder)
            self._remember_base(folder)

    # -- training ------------------------------------------------------------------------------
    def running(self) -> bool:
        return self.window_.runner.is_busy(TRAIN_SLOT)

    def base_name(self, base_dir: Path) -> str:
        host = self.window_.engine_host
        return Path(host.path).stem if host.path is not None else base_dir.name

    def train(self) -> bool:
        """Start (or resume) training with the dialog's choices; False if it did not start."""
        from ...core.adapters import adapters_dir
        from ...core.finetune import run_finetune_process

        w, d = self.window_, self.dialog
        if d is None or w.dataset is None:
            return False
        if self.running():
            w.status.setText("A training run is going: Cancel (Esc) stops it")
            return False
        plan = self.plan()
        options = self.options()
        base = d.base_dir()
        if plan is None or options is None:
            return False
        if base is None:
            d.split_note.setText("Choose the base checkpoint folder the model was converted from")
            d.split_note.setStyleSheet(ERROR_STYLE)
            return False
        self._remember_base(base)
        directory = adapters_dir()
        directory.mkdir(parents=True, exist_ok=True)
        host = w.engine_host
        request = TrainRequest(
            data_path=Path(w.dataset.path),
            base_dir=base,
            out_path=adapter_path(self.base_name(base), options.label_key, directory),
            options=options,
            base_gguf=None if host.path is None else Path(host.path),
        )
        self.request, self.result = request, None
        d.clear_plots()
        d.result_label.setText("")
        d.set_running(True)
        d.progress_label.setText("Starting the training process…")
        relay = self.relay
        job = w.runner.start(
            TRAIN_SLOT,
            run_finetune_process,
            request.data_path,
            request.base_dir,
            request.out_path,
            request.options,
            on_step=relay.step.emit,
            on_success=lambda result: self._done(request, result),
            on_failure=self._failed,
        )
        job.progress.connect(self._progress)
        job.done.connect(self._ended)
        w.status.setText(f"Training on '{options.label_key}'… (Esc cancels)")
        return True

    def cancel(self) -> None:
        """Stop training; the core keeps its last checkpoint, so Train again resumes."""
        if not self.running():
            return
        self.window_.runner.cancel(TRAIN_SLOT)
        if self.dialog is not None:
            self.dialog.progress_label.setText("Cancelling… the last checkpoint is kept")
            self.dialog.offer_resume(True)
        self.window_.status.setText("Training cancelled — the last checkpoint is kept")

    def _progress(self, fraction: float, message: str) -> None:
        d = self.dialog
        if d is None or d.steps:  # once steps arrive, they drive the bar
            return
        if fraction >= 0:
            d.progress.setRange(0, 1000)
            d.progress.setValue(int(1000 * fraction))
        if message:
            d.progress_label.setText(message)

    def _step(self, report: StepReport) -> None:
        if self.dialog is not None and self.running():
            self.dialog.add_step(report)

    def _ended(self) -> None:
        d = self.dialog
        if d is not None and not self.running():
            d.set_running(False)
            d.scope_selection.setEnabled(len(self.window_.selection.current) > 0)
            if self.result is None and d.steps:  # cancelled here or by the window's Esc
                d.offer_resume(True)
                d.progress_label.setText(
                    f"Stopped at step {d.steps[-1][0]:,}: the last checkpoint is kept; "
                    "Train again resumes from it"
                )
            self.plan()

    def _failed(self, exc: BaseException) -> None:
        if self.dialog is not None:
            self.dialog.offer_resume(True)
        if isinstance(exc, Cancelled):
            self.window_.status.setText("Training cancelled — the last checkpoint is kept")
            return
        self.window_.report_error(exc, "Training failed")

    def _done(self, request: TrainRequest, result: FinetuneResult) -> None:
        self.result = result
        d = self.dialog
        text = result_text(result)
        if d is not None:
            d.offer_resume(False)
            d.result_label.setText(text)
        w = self.window_
        w.status.setText(text)
        self.labels_trained.emit(request.options.label_key)
        self.trained.emit(result)
        if request.base_gguf is None:
            if d is not None:
                d.result_label.setText(
                    text + " Load a GGUF of this base with the adapter in Model ▸ Models…"
                )
            return
        self.activate(request.base_gguf, Path(result.adapter_path))

    def activate(
        self, base_gguf: Path, adapter: Path, then: Callable[[], None] | None = None
    ) -> bool:
        """Make base + adapter the active model (after the running model job, if any)."""
        host = self.window_.engine_host
        if host.load(base_gguf, then, adapter=adapter):
            return True
        self.window_.status.setText(
            f"Adapter saved as {adapter.name}; the model is busy — load it in Model ▸ Models…"
        )
        return False


def result_text(result: FinetuneResult) -> str:
    """``Adapter NAME: held-out accuracy 40% → 85% (N steps, 3.2 min, 1.2 MB)``."""
    from ..engine_host import human_bytes

    before = "?" if result.accuracy_before is None else f"{result.accuracy_before:.0%}"
    after = "?" if result.accuracy_after is None else f"{result.accuracy_after:.0%}"
    return (
        f"Adapter {Path(result.adapter_path).name}: held-out accuracy {before} → {after} "
        f"({result.steps:,} steps, {duration_text(result.seconds)}, "
        f"{human_bytes(result.adapter_bytes)})."
    )
