"""The main window: data panel | embedding view | selection panel, jobs in the status bar.

Widgets only show state and forward requests; every read of the expression matrix and every
model call runs as a background job (:class:`JobRunner`), one current job per kind, so the
window stays responsive. The model lives in :class:`EngineHost` (its own process); results of
model tasks are kept in ``window.results`` (``"annotate"``, ``"embed"``, ...).

The window is assembled from parts named for what they hold: :mod:`.window_layout` (docks,
status bar, saved layout), :mod:`.window_menus` (menus, shortcuts, toolbar),
:mod:`.window_opening` (files, recent files, drag and drop), :mod:`.window_selection`
(selection, saved selections, export) and :mod:`.window_models` (model, Embed cells).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QEventLoop, QSettings, QTimer, Signal
from PySide6.QtWidgets import QMainWindow, QMenu, QMessageBox

from ..core.dataset import Dataset
from ..core.embedding import PCA_KEY, compute_pca, gene_expression
from ..core.errors import C2SError, Cancelled
from .dialogs import show_error
from .engine_host import EngineHost
from .jobs import JobRunner
from .panels.annotate import AnnotateController, AnnotatePanel
from .panels.data import DataPanel
from .panels.models import ModelManager
from .panels.selection import SelectionPanel
from .plot import EmbeddingView
from .window_layout import WindowLayout
from .window_menus import WindowMenus
from .window_models import WindowModels
from .window_opening import WindowOpening
from .window_selection import WindowSelection


class MainWindow(
    WindowLayout, WindowMenus, WindowOpening, WindowSelection, WindowModels, QMainWindow
):
    """Open a file (menu, toolbar, Ctrl+O, drag and drop, recent files), explore, select."""

    dataset_closing = Signal()
    """A newly opened file is about to replace the current dataset (save its work now)."""
    dataset_loaded = Signal()
    """A dataset was opened and shown."""
    selection_changed = Signal()
    """The current or a named selection changed (also when a new dataset's model replaced it)."""
    results_changed = Signal(str)
    """A model task's result was kept (its task name)."""

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("C2S Desktop")
        self.resize(1400, 820)
        self.setAcceptDrops(True)
        self.settings = QSettings()
        self.dataset: Dataset | None = None
        self._reset_selection(0)
        self.embeddings: dict[str, np.ndarray] = {}
        self.last_error: QMessageBox | None = None
        self.results: dict[str, object] = {}
        """Results of model tasks on this dataset: "annotate" (AnnotateResult), "embed", ..."""
        self.result_models: dict[str, dict[str, str | None]] = {}
        """Which model made each result (name, path, sha256, server), for provenance."""
        self.runner = JobRunner(self)
        self.engine_host = EngineHost(self.runner, self, self.settings)
        self.model_manager: ModelManager | None = None
        self.menus: dict[str, QMenu] = {}
        self.view = EmbeddingView()
        self.setCentralWidget(self.view)
        self.data_panel = DataPanel()
        self.selection_panel = SelectionPanel()
        self.annotate_panel = AnnotatePanel()
        self._build_docks()
        self.annotate = AnnotateController(self, self.annotate_panel)
        self._build_status()
        self._build_actions()
        self._connect()
        QTimer.singleShot(0, self.engine_host.autoload)  # a small remembered model loads now
        # -- workflow controllers (assistant, generate, export, session)
        from .assistant import AssistantController
        from .export_dialog import ExportController
        from .generate import GenerateController
        from .session import SessionController

        self.assistant = AssistantController(self)
        self.generator = GenerateController(self)
        self.exporter = ExportController(self)
        self.session = SessionController(self)
        # -- preparing a dataset (QC, clusters, UMAP) and its marker genes
        from .clusters import ClusterNames
        from .panels.markers import MarkersController
        from .panels.prepare import PrepareController

        self.clusters = ClusterNames(self)
        self.preparer = PrepareController(self)
        self.marker_view = MarkersController(self)
        self.session.follow(
            self.selection_changed,
            self.results_changed,
            self.assistant.changed,
            self.generator.changed,
            self.clusters.changed,
        )
        self._restore_settings()  # after every dock exists, so the saved layout covers them

    def _connect(self) -> None:
        self.runner.progress.connect(self._on_progress)
        self.runner.busy_changed.connect(self._show_busy)
        self.view.embedding_requested.connect(self.show_embedding)
        self.view.gene_requested.connect(self.colour_by_gene)
        self.view.pca_requested.connect(self.compute_pca)
        self.view.selection_made.connect(self.set_selection)
        self.data_panel.apply_requested.connect(self.apply_choices)
        panel = self.selection_panel
        panel.save_requested.connect(self.save_selection)
        panel.restore_requested.connect(
            lambda name: self._show_selection(self.selection.restore(name))
        )
        panel.delete_requested.connect(self.delete_selection)
        panel.export_requested.connect(self.choose_export)
        panel.sentences_requested.connect(self._request_sentences)
        self.engine_host.changed.connect(self._model_changed)
        self.engine_host.crashed.connect(lambda line: self.status.setText(f"Model stopped: {line}"))

    def set_result(self, task: str, result: object) -> None:
        """Keep a model task's result with the loaded model's record; emits ``results_changed``."""
        self.results[task] = result
        self.result_models[task] = self.engine_host.model_record()
        self.results_changed.emit(task)

    # -- embedding and colouring -----------------------------------------------------------------
    def show_embedding(self, name: str) -> None:
        if self.dataset is None or not name:
            return
        try:
            xy = self.embeddings.get(name)
            self.view.set_embedding(self.dataset.embedding(name) if xy is None else xy)
        except C2SError as exc:
            self.report_error(exc, "Cannot show the embedding")

    def compute_pca(self) -> None:
        if self.dataset is not None:
            self.runner.start(
                "pca",
                compute_pca,
                self.dataset,
                on_success=self._pca_done,
                on_failure=lambda exc: self.report_error(exc, "PCA failed"),
            )

    def _pca_done(self, scores: np.ndarray) -> None:
        self.embeddings[PCA_KEY] = scores
        self.view.add_embedding(PCA_KEY)
        self.show_embedding(PCA_KEY)

    def colour_by_gene(self, gene: str) -> None:
        if self.dataset is not None:
            self.runner.start(
                "gene",
                gene_expression,
                self.dataset,
                gene,
                on_success=lambda values: self.view.colour_by_gene(gene, values),
                on_failure=lambda exc: self.report_error(exc, "Cannot colour by gene"),
            )

    def add_obs_category(self, column: str, show: bool = True) -> None:
        """Make an obs column added in memory (e.g. ``c2s_cell_type``) a category everywhere."""
        if self.dataset is None:
            return
        categories = list(self.dataset.categorical_obs())
        self.selection_panel.set_obs(self.dataset.obs, categories)
        self.view.add_category(column, show)
        self._show_selection(self.selection.current)

    # -- errors ----------------------------------------------------------------------------------
    def report_error(self, exc: BaseException, title: str, path: Path | None = None) -> None:
        """Show ``exc`` to the user (a dialog), or "Cancelled" in the status bar."""
        if isinstance(exc, Cancelled):
            self.status.setText("Cancelled")
            return
        self.status.setText(title)
        if path is not None and isinstance(exc, C2SError):
            self.data_panel.show_problem(f"{Path(path).name}: {exc.message}")
        self.last_error = show_error(self, title, exc)

    def wait_until_idle(self, timeout_ms: int = 60_000) -> bool:
        """Process events until no background job runs; False on timeout."""
        if self.runner.is_busy():
            loop = QEventLoop()
            self.runner.idle.connect(loop.quit)
            QTimer.singleShot(timeout_ms, loop.quit)
            loop.exec()
            self.runner.idle.disconnect(loop.quit)
        return not self.runner.is_busy()

    # -- drag and drop, closing ------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802, ANN001
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802, ANN001
        urls = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.open_file(Path(urls[0]))

    def closeEvent(self, event) -> None:  # noqa: N802, ANN001
        self._save_settings()
        self.runner.cancel()
        self.runner.wait()
        self.engine_host.close()
        if self.dataset is not None:
            self.dataset.close()
        super().closeEvent(event)
