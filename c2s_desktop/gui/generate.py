"""Generate controller: synthetic cells of a cell type with the loaded model, compared with the
real cells of that type in the open dataset (which is also the inverse-transform reference)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QDockWidget, QFileDialog, QScrollArea

from ..core.dataset import Dataset
from ..core.errors import C2SError, Cancelled, DataError
from ..core.generate_compare import (
    TYPE_COLUMN_HINTS,
    Comparison,
    generate_job,
    real_rows,
    save_job,
)
from ..core.session import GeneratedSet
from ..core.tasks.generate import GenerateOptions, GenerateResult
from .actions import window_action, window_menu
from .assistant import no_model
from .audit_jobs import audited, job_params
from .engine_host import MODEL_SLOT
from .export_dialog import confirm_overwrite, refuse_input
from .panels.generate import GeneratePanel

SAVE_SLOT = "generate-save"


class GenerateController(QObject):
    """Creates the Generate dock and Tasks ▸ Generate cells…; runs and saves generations."""

    changed = Signal()
    """A generated set was added (for the autosave)."""

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.panel = GeneratePanel()
        self.dock = QDockWidget("Generate", window)
        self.dock.setObjectName("dock_generate")
        scroll = QScrollArea()  # the form and plot need more height than a shared dock has
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.panel)
        self.dock.setWidget(scroll)
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        assistant = window.findChild(QDockWidget, "dock_assistant")
        if assistant is not None:
            window.tabifyDockWidget(assistant, self.dock)
            assistant.raise_()
        view_menu = window_menu(window, "view")
        if view_menu is not None:
            view_menu.addAction(self.dock.toggleViewAction())
        self.sets: list[GeneratedSet] = []
        self.revision = 0
        self.result: GenerateResult | None = None
        self.comparison: Comparison | None = None
        self.options: GenerateOptions | None = None
        self.saved_path: Path | None = None
        self._dataset: Dataset | None = None
        self._generating_for: Dataset | None = None
        self._job: object = None
        self.action = window_action(window, "&Generate cells…", self.show, "Ctrl+Shift+G", "tasks")
        p = self.panel
        p.generate_requested.connect(self.generate)
        p.cancel_requested.connect(self.cancel)
        p.save_requested.connect(self.choose_save)
        p.column_changed.connect(self._fill_types)
        window.dataset_loaded.connect(self._follow_dataset)
        window.dataset_closing.connect(self._follow_dataset)

    def show(self) -> None:
        self.dock.show()
        self.dock.raise_()

    # -- dataset -------------------------------------------------------------------------------
    def _follow_dataset(self) -> None:
        ds = self.window.dataset
        if ds is self._dataset:
            return
        self._dataset = ds
        self.result = self.comparison = None
        self.panel.save_button.setEnabled(False)
        if ds is None:
            return
        columns = list(ds.categorical_obs())
        preferred = next(
            (c for hint in TYPE_COLUMN_HINTS for c in columns if hint in c.lower()), ""
        )
        self.panel.set_columns(columns, preferred)
        self._fill_types(self.panel.column_box.currentText())

    def _fill_types(self, column: str) -> None:
        ds = self.window.dataset
        if ds is None or column not in ds.obs.columns:
            self.panel.set_types([])
            return
        values = ds.obs[column].dropna().astype(str).value_counts()
        self.panel.set_types([str(v) for v in values.index])

    def set_sets(self, sets: list[GeneratedSet]) -> None:
        """Restore generated sets (sentences) from a session; the latest is shown."""
        self.sets = list(sets)
        self.revision += 1
        if self.sets:
            last = self.sets[-1]
            self.panel.show_sentences(last.sentences)
            self.panel.info.setText(
                f"{len(last.sentences)} {last.cell_type} cells generated earlier (restored; "
                "generate again to compare and save)"
            )

    # -- generating ----------------------------------------------------------------------------
    def generate(self) -> None:
        w = self.window
        if w.dataset is None:
            w.status.setText("Open a dataset first: it is the reference for the expression")
            return
        options = self.panel.options(w.dataset.organism)
        if not options.cell_type:
            no_type = DataError("no cell type given", hint="pick or type a cell type")
            w.report_error(no_type, "Generate")
            return
        host = w.engine_host
        if w.runner.is_busy(MODEL_SLOT) and host.loading is None:
            w.status.setText("The model is busy with another task; Cancel (Esc) stops it")
            return
        if not host.ensure(lambda: self._start(options)):
            no_model(w)

    def _start(self, options: GenerateOptions) -> None:
        w = self.window
        try:
            engine = w.engine_host.engine()
        except C2SError as exc:
            self._failed(exc)
            return
        rows = real_rows(w.dataset, self.panel.column_box.currentText(), options.cell_type)
        self.options = options
        self._generating_for = w.dataset
        self.panel.set_busy(True)
        w.status.setText(f"Generating {options.n_cells} {options.cell_type} cells…")
        job = w.runner.start(
            MODEL_SLOT,
            audited(w, "generate", generate_job, params=job_params(options)),
            w.dataset,
            engine,
            options,
            rows,
            on_success=self._finished,
            on_failure=self._failed,
        )
        job.progress.connect(self.panel.show_progress)
        self._job = job
        job.done.connect(lambda: self.panel.set_busy(False) if self._job is job else None)

    def cancel(self) -> None:
        self.window.runner.cancel(MODEL_SLOT)
        self.panel.set_busy(False)
        self.window.status.setText("Generation cancelled")

    def _finished(self, value: tuple[GenerateResult, Comparison]) -> None:
        result, comp = value
        if self.window.dataset is not self._generating_for:
            return  # another file was opened meanwhile
        self.result, self.comparison = result, comp
        options = self.options
        assert options is not None
        self.panel.set_busy(False)
        self.panel.show_sentences(result.sentences, result.n_invalid)
        self.panel.show_comparison(comp.genes, comp.generated, comp.real, options.cell_type)
        real = (
            f"compared with {comp.n_real:,} real cells"
            if comp.real is not None
            else "no real cells of this type in the dataset"
        )
        warn = "".join(f"\n⚠ {w}" for w in result.warnings)
        self.panel.info.setText(
            f"{len(result.sentences)} cells; {result.valid_fraction:.0%} of words are genes of "
            f"the reference; inverse fit R² {result.fit.r_squared:.2f}; {real}{warn}"
        )
        self.panel.save_button.setEnabled(True)
        info = self.window.engine_host.info
        params = dataclasses.asdict(options)
        params.pop("cell_type", None)
        self.sets.append(
            GeneratedSet(
                options.cell_type, list(result.sentences), params, info.name if info else ""
            )
        )
        self.revision += 1
        self.changed.emit()
        self.window.status.setText(f"Generated {len(result.sentences)} {options.cell_type} cells")

    def _failed(self, exc: BaseException) -> None:
        self.panel.set_busy(False)
        if isinstance(exc, Cancelled):
            self.window.status.setText("Generation cancelled")
            return
        if not self.window.engine_host.handle_failure(exc):
            self.window.report_error(exc, "Generate failed")

    # -- saving --------------------------------------------------------------------------------
    def default_path(self) -> Path:
        ds = self.window.dataset
        kind = (self.options.cell_type if self.options else "cells").replace(" ", "_")
        safe = "".join(c for c in kind if c.isalnum() or c in "_-+") or "cells"
        base = ds.path if ds is not None else Path.home() / "c2s.h5ad"
        return base.with_name(f"{base.stem}_generated_{safe}.h5ad")

    def choose_save(self) -> None:
        if self.result is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self.window,
            "Save generated cells",
            str(self.default_path()),
            "AnnData (*.h5ad)",
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        if path:
            self.save_to(Path(path))

    def save_to(self, path: Path) -> bool:
        """Save the generated cells (with provenance) to ``path`` in the background."""
        w = self.window
        if self.result is None or self.options is None or w.dataset is None:
            w.status.setText("Generate cells first")
            return False
        if refuse_input(w, path):
            return False
        overwrite = path.exists()
        if overwrite and not confirm_overwrite(w, [path]):
            w.status.setText("Not saved: the existing file was kept")
            return False
        host = w.engine_host
        info = host.info
        w.runner.start(
            SAVE_SLOT,
            audited(
                w,
                "export",
                save_job,
                params={"content": "generated cells"},
                outputs=[path],
                uses_model=False,
            ),
            self.result,
            Path(w.dataset.path),
            self.options,
            (info.name if info else "", host.sha256 or ""),
            path,
            overwrite,
            on_success=self._saved,
            on_failure=lambda exc: w.report_error(exc, "Cannot save the generated cells"),
        )
        return True

    def _saved(self, path: Path) -> None:
        self.saved_path = path
        self.window.status.setText(f"Generated cells written to {path}")
