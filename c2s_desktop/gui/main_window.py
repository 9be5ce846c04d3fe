"""The main window: data panel | embedding view | selection panel, jobs in the status bar.

Widgets only show state and forward requests; every read of the expression matrix and every
model call runs as a background job (:class:`JobRunner`), one current job per kind, so the
window stays responsive. The model lives in :class:`EngineHost` (its own process); results of
model tasks are kept in ``window.results`` (``"annotate"``, ``"embed"``, ...).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QByteArray, QEventLoop, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QToolBar,
    QWidget,
)

from ..core.dataset import Dataset, DatasetInfo, open_dataset
from ..core.embedding import PCA_KEY, compute_pca, gene_expression, gene_names
from ..core.errors import C2SError, Cancelled
from ..core.markers import top_genes
from ..core.model_store import demo_model_path
from ..core.progress import CancelToken, ProgressFn, no_progress
from ..core.results import EMBEDDING, LAYOUT, TASK_EMBED, embed_obsm
from ..core.selection import (
    MODE_REPLACE,
    SelectionModel,
    export_csv,
    load_selections,
    save_selections,
    session_file,
)
from ..core.sentences import cell_sentences
from ..core.tasks.embed import EmbedOptions, EmbedResult, embed_cells
from .audit_jobs import audited
from .dialogs import show_error
from .engine_host import MODEL_SLOT, EngineHost
from .jobs import JobRunner
from .panels.annotate import AnnotateController, AnnotatePanel
from .panels.data import DataPanel
from .panels.models import ModelManager, ModelPicker
from .panels.selection import SelectionPanel
from .plot import TOOL_LASSO, TOOL_PAN, TOOL_RECT, EmbeddingView

MAX_RECENT = 10
C2S_EMBEDDING = EMBEDDING


def preferred_embedding(names: list[str]) -> str:
    """UMAP, then t-SNE, then whatever comes first (PCA is the least readable map)."""
    for hint in ("umap", "tsne", "t-sne"):
        for name in names:
            if hint in name.lower():
                return name
    return names[0]


def _load(
    path: Path, progress: ProgressFn = no_progress, cancel: CancelToken | None = None
) -> tuple[Dataset, DatasetInfo]:
    ds = open_dataset(path, progress=progress, cancel=cancel)
    return ds, ds.info()


def _reselect(dataset: Dataset, source: str, symbols: str, organism: str) -> DatasetInfo:
    dataset.select(source, symbols, organism)
    return dataset.info()


def _close(result: object) -> None:
    if isinstance(result, tuple) and result and isinstance(result[0], Dataset):
        result[0].close()


class MainWindow(QMainWindow):
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
        self.result_models: dict[str, dict[str, str | None]] = {}
        """Which model made each result (name, path, sha256, server), for provenance."""
        """Results of model tasks on this dataset: "annotate" (AnnotateResult), "embed", ..."""
        self.runner = JobRunner(self)
        self.engine_host = EngineHost(self.runner, self, self.settings)
        self.model_manager: ModelManager | None = None
        self.menus: dict[str, QMenu] = {}
        self.view = EmbeddingView()
        self.setCentralWidget(self.view)
        self.data_panel = DataPanel()
        self.selection_panel = SelectionPanel()
        self.annotate_panel = AnnotatePanel()
        self._dock("Data", self.data_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        selection_scroll = QScrollArea()  # the panel is tall: scroll rather than squeeze docks
        selection_scroll.setWidgetResizable(True)
        selection_scroll.setWidget(self.selection_panel)
        selection_dock = self._dock(
            "Selection", selection_scroll, Qt.DockWidgetArea.RightDockWidgetArea
        )
        self.annotate_dock = self._dock(
            "Annotate", self.annotate_panel, Qt.DockWidgetArea.RightDockWidgetArea
        )
        self.tabifyDockWidget(selection_dock, self.annotate_dock)  # Tasks ▸ Annotate raises it
        selection_dock.raise_()
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

    # -- construction --------------------------------------------------------------------------
    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{title.lower()}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        if "view" in self.menus:
            self.menus["view"].addAction(dock.toggleViewAction())
        return dock

    def add_dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        """Add a dock (object name ``dock_<title>``), listed in the View menu."""
        return self._dock(title, widget, area)

    def _build_status(self) -> None:
        self.status = QLabel("Ready")
        self.job_label = QLabel("")
        self.progress = QProgressBar(maximumWidth=220)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Cancel the running work (Esc)")
        self.cancel_button.clicked.connect(self.cancel_jobs)
        self.statusBar().addWidget(self.status, 1)
        for w in (self.job_label, self.progress, self.cancel_button):
            self.statusBar().addPermanentWidget(w)
        offline = QLabel("Offline")
        offline.setToolTip("Nothing leaves this computer; only a model download you confirm does")
        self.statusBar().addPermanentWidget(offline)
        self._show_busy(False)

    def _action(self, text: str, slot, shortcut=None, menu=None) -> QAction:  # noqa: ANN001
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        self.addAction(action)
        if menu is not None:
            menu.addAction(action)
        return action

    def _build_actions(self) -> None:
        bar = self.menuBar()
        m = self.menus
        for key, title in (
            ("file", "&File"),
            ("edit", "&Edit"),
            ("selection", "&Selection"),
            ("model", "&Model"),
            ("tasks", "&Tasks"),
            ("view", "&View"),
            ("help", "&Help"),
        ):
            m[key] = bar.addMenu(title)
        file_menu = m["file"]
        self.open_action = self._action(
            "&Open…", self.choose_file, QKeySequence.StandardKey.Open, file_menu
        )
        self.open_folder_action = self._action(
            "Open Cell Ranger &folder…", self.choose_folder, None, file_menu
        )
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self._refresh_recent()
        self.export_csv_action = self._action(
            "&Export selection (CSV)…", self.choose_export, "Ctrl+E", file_menu
        )
        file_menu.addSeparator()
        self.quit_action = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit)
        file_menu.addAction(self.quit_action)
        self._action("Cancel lasso / running work", self._escape, "Esc", m["edit"])
        model = m["model"]
        self.models_action = self._action("&Models…", self.show_model_manager, "Ctrl+M", model)
        self._action(
            "Load the &demo model", lambda: self.load_model(demo_model_path()), None, model
        )
        self.restart_action = self._action(
            "&Restart model", lambda: self.engine_host.restart(), None, model
        )
        self._action("&Unload model", self.engine_host.unload, None, model)
        model.addSeparator()
        self._action("Connect to a &server…", self.connect_server, None, model)
        tasks = m["tasks"]
        self.annotate_action = self._action(
            "&Annotate cell types…", self.show_annotate, "Ctrl+Shift+N", tasks
        )
        self.embed_action = self._action("&Embed cells", self.embed_cells, "Ctrl+Shift+B", tasks)
        self._action("&Audit log…", self.show_audit_log, None, m["help"])
        self._action("&About C2S Desktop", self._about, None, m["help"])
        sel = m["selection"]
        for text, tool, key in (
            ("&Pan / zoom", TOOL_PAN, "P"),
            ("&Lasso", TOOL_LASSO, "L"),
            ("&Rectangle", TOOL_RECT, "R"),
        ):
            self._action(text, lambda _=False, t=tool: self.view.set_tool(t), key, sel)
        sel.addSeparator()
        self._action("&Save selection", self._save_shortcut, "Ctrl+S", sel)
        self._action("Select &all", self.select_all, "Ctrl+A", sel)
        self._action("&Clear selection", self.clear_selection, "Ctrl+Shift+A", sel)
        for dock in self.findChildren(QDockWidget):
            m["view"].addAction(dock.toggleViewAction())
        tools = self.toolbar = QToolBar("Main")
        tools.setObjectName("toolbar_main")
        self.addToolBar(tools)
        tools.addAction(self.open_action)
        self.model_picker = ModelPicker(self)
        tools.addWidget(self.model_picker)
        tools.addAction(self.annotate_action)
        tools.addAction(self.embed_action)

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

    def _restore_settings(self) -> None:
        geometry = self.settings.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        state = self.settings.value("window/state")
        if isinstance(state, QByteArray):
            self.restoreState(state)

    # -- opening -------------------------------------------------------------------------------
    def recent_files(self) -> list[str]:
        value = self.settings.value("recent_files", [])
        return [str(v) for v in (value if isinstance(value, list) else [value]) if v]

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        for item in self.recent_files():
            action = self.recent_menu.addAction(item)
            action.triggered.connect(lambda _=False, p=item: self.open_file(Path(p)))
        self.recent_menu.setEnabled(bool(self.recent_files()))

    def choose_file(self) -> None:
        recent = self.recent_files()
        start = str(Path(recent[0]).parent) if recent else str(Path.home())
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Open dataset",
            start,
            "Single-cell data (*.h5ad *.h5);;AnnData (*.h5ad);;Cell Ranger (*.h5);;All files (*)",
        )
        if path:
            self.open_file(Path(path))

    def choose_folder(self) -> None:
        """Open a Cell Ranger matrix folder (matrix.mtx[.gz], features.tsv[.gz], barcodes)."""
        recent = self.recent_files()
        start = str(Path(recent[0]).parent) if recent else str(Path.home())
        path = QFileDialog.getExistingDirectory(self, "Open Cell Ranger matrix folder", start)
        if path:
            self.open_file(Path(path))

    def open_file(self, path: Path) -> None:
        """Open ``path`` in the background (Cancel abandons it); the window stays responsive."""
        path = Path(path)
        self.status.setText(f"Opening {path.name}…")
        self.runner.start(
            "open",
            _load,
            path,
            on_success=self._loaded,
            on_failure=lambda exc: self.report_error(exc, "Cannot open file", path),
            discard=_close,
        )

    def _loaded(self, result: tuple[Dataset, DatasetInfo]) -> None:
        for slot in ("gene", "pca", "markers", "sentences", "reselect"):
            self.runner.cancel(slot)
        if self.dataset is not None:
            self.dataset_closing.emit()
        old, (self.dataset, info) = self.dataset, result
        if old is not None:
            self._close_when_idle(old)
        ds = self.dataset
        self.embeddings = {}
        self.results.clear()
        self.result_models.clear()
        self._reset_selection(ds.n_cells)
        self.data_panel.show_dataset(ds, info)
        categories = list(info.obs_columns)
        self.selection_panel.set_obs(ds.obs, categories)
        self.annotate_panel.set_obs(ds.obs, categories)
        self.annotate_panel.show_result(None)
        self.annotate.update_estimate()
        self.view.set_dataset(
            ds.obs, ds.cell_ids, list(info.embeddings), categories, gene_names(ds)
        )
        if info.embeddings:
            self.view.embedding_box.setCurrentText(preferred_embedding(list(info.embeddings)))
            self.show_embedding(self.view.embedding_box.currentText())
        self.setWindowTitle(f"{Path(info.path).name} — C2S Desktop")
        self.status.setText(
            f"{info.n_cells:,} cells × {info.n_genes:,} genes"
            + ("" if info.embeddings else " — no embedding in the file: use Compute PCA")
        )
        self._remember(info.path)
        self._load_session()
        self.dataset_loaded.emit()

    def _reset_selection(self, n_cells: int) -> None:
        """A new, empty selection model for ``n_cells`` cells; its changes become signals."""
        self.selection = SelectionModel(n_cells)
        self.selection.subscribe(self.selection_changed.emit)
        self.selection_changed.emit()

    def set_result(self, task: str, result: object) -> None:
        """Keep a model task's result with the loaded model's record; emits ``results_changed``."""
        self.results[task] = result
        self.result_models[task] = self.engine_host.model_record()
        self.results_changed.emit(task)

    def _remember(self, path: str) -> None:
        recent = [path] + [p for p in self.recent_files() if p != path]
        self.settings.setValue("recent_files", recent[:MAX_RECENT])
        self._refresh_recent()

    def _close_when_idle(self, dataset: Dataset) -> None:
        # A cancelled job may still be reading the old file: close it once all threads stopped.
        if not self.runner.is_busy():
            dataset.close()
            return
        self.runner.idle.connect(dataset.close, Qt.ConnectionType.SingleShotConnection)

    def apply_choices(self, source: str, symbols: str, organism: str) -> None:
        """Re-read the expression source / gene symbols / organism as the user chose."""
        if self.dataset is None:
            return
        self.runner.cancel()
        self.runner.start(
            "reselect",
            _reselect,
            self.dataset,
            source,
            symbols,
            organism,
            on_success=self._reselected,
            on_failure=lambda exc: self.report_error(exc, "Cannot use these choices"),
        )

    def _reselected(self, info: DatasetInfo) -> None:
        assert self.dataset is not None
        self.data_panel.show_dataset(self.dataset, info)
        self.view.gene_model.setStringList(gene_names(self.dataset))
        self.status.setText(f"Using {info.source}, symbols from {info.symbols_source}")
        self._show_selection(self.selection.current)

    # -- embedding and colouring ---------------------------------------------------------------
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

    # -- selection -----------------------------------------------------------------------------
    def set_selection(self, rows: np.ndarray, mode: str = MODE_REPLACE) -> None:
        """Apply a new selection (from the view, a category or a saved one)."""
        self._show_selection(self.selection.update(rows, mode))

    def _show_selection(self, rows: np.ndarray) -> None:
        self.view.set_selection(rows)
        self.selection_panel.show_selection(rows)
        self.status.setText(f"{len(rows):,} cells selected")
        self.runner.cancel("markers")
        self.runner.cancel("sentences")
        if self.dataset is None or not len(rows):
            return
        self.selection_panel.request_sentences()
        if len(rows) < self.dataset.n_cells:
            self.runner.start(
                "markers",
                top_genes,
                self.dataset,
                rows,
                on_success=self.selection_panel.show_markers,
                on_failure=lambda exc: self.report_error(exc, "Top genes failed"),
            )
        else:
            self.selection_panel.show_markers([], "every cell is selected: nothing to compare")

    def _request_sentences(self, n_cells: int, n_genes: int) -> None:
        if self.dataset is None or not len(self.selection.current):
            return
        rows = self.selection.current[:n_cells]
        ids = list(self.dataset.cell_ids[rows])
        self.runner.start(
            "sentences",
            cell_sentences,
            self.dataset,
            rows,
            n_genes,
            on_success=lambda sentences: self.selection_panel.show_sentences(ids, sentences),
            on_failure=lambda exc: self.report_error(exc, "Cell sentences failed"),
        )

    def select_all(self) -> None:
        if self.dataset is not None:
            self.set_selection(np.arange(self.dataset.n_cells))

    def clear_selection(self) -> None:
        self.set_selection(np.zeros(0, dtype=np.int64))

    def save_selection(self, name: str) -> None:
        try:
            sel = self.selection.save(name)
        except C2SError as exc:
            self.report_error(exc, "Cannot save the selection")
            return
        self.selection_panel.name_edit.clear()
        self._store_session()
        self.status.setText(f"Saved '{sel.name}' ({sel.n_cells:,} cells)")

    def _save_shortcut(self) -> None:
        panel = self.selection_panel
        name = panel.name_edit.text().strip() or f"selection {len(self.selection.saved) + 1}"
        self.save_selection(name)

    def delete_selection(self, name: str) -> None:
        self.selection.remove(name)
        self._store_session()

    def _store_session(self) -> None:
        self.selection_panel.set_saved(list(self.selection.saved))
        if self.dataset is None:
            return
        try:
            save_selections(session_file(self.dataset.path), self.dataset.path, self.selection)
        except C2SError as exc:
            self.report_error(exc, "Cannot save the session")

    def _load_session(self) -> None:
        assert self.dataset is not None
        path = session_file(self.dataset.path)
        if not path.exists():
            return
        try:
            n = load_selections(path, self.selection)
        except C2SError as exc:
            self.status.setText(exc.one_line())
            return
        self.selection_panel.set_saved(list(self.selection.saved))
        if n:
            self.status.setText(f"{self.status.text()} — {n} saved selection(s) restored")

    def choose_export(self) -> None:
        if self.dataset is None or not len(self.selection.current):
            self.status.setText("Select cells first, then export them")
            return
        start = str(self.dataset.path.with_name(f"{self.dataset.path.stem}_selection.csv"))
        path, _ = QFileDialog.getSaveFileName(self, "Export selection", start, "CSV (*.csv)")
        if path:
            self.export_selection(Path(path))

    def export_selection(self, path: Path) -> Path | None:
        """Write the selected cells' ids (and obs category columns) to ``path``."""
        if self.dataset is None:
            return None
        ds = self.dataset
        try:
            out = export_csv(
                path, ds.cell_ids, self.selection.current, ds.obs, list(ds.categorical_obs())
            )
        except C2SError as exc:
            self.report_error(exc, "Cannot export")
            return None
        self.status.setText(f"Exported {len(self.selection.current):,} cells to {out}")
        return out

    # -- model and model tasks -----------------------------------------------------------------
    def show_model_manager(self) -> ModelManager:
        if self.model_manager is None:
            self.model_manager = ModelManager(self)
        else:
            self.model_manager.refresh()
        self.model_manager.show()
        self.model_manager.raise_()
        return self.model_manager

    def load_model(self, path: Path) -> bool:
        """Load the GGUF ``path`` in the background (remembered for the next start)."""
        if not self.engine_host.load(Path(path)):
            self.model_busy()
            return False
        return True

    def model_busy(self) -> None:
        self.status.setText("The model is busy with another task: Cancel (Esc) stops it")

    def no_model(self) -> None:
        self.status.setText("No model loaded: choose one in Model ▸ Models… (Ctrl+M)")
        self.show_model_manager()

    def _model_changed(self) -> None:
        self.restart_action.setEnabled(self.engine_host.info is not None)

    def show_annotate(self) -> None:
        self.annotate_dock.show()
        self.annotate_dock.raise_()
        self.annotate.update_estimate()
        self.annotate_panel.start_button.setFocus()

    def add_obs_category(self, column: str, show: bool = True) -> None:
        """Make an obs column added in memory (e.g. ``c2s_cell_type``) a category everywhere."""
        if self.dataset is None:
            return
        categories = list(self.dataset.categorical_obs())
        self.selection_panel.set_obs(self.dataset.obs, categories)
        self.view.add_category(column, show)
        self._show_selection(self.selection.current)

    def embed_cells(self) -> None:
        """C2S embedding of the selection (all cells when none) → the "X_c2s" embedding."""
        if self.dataset is None:
            self.status.setText("Open a dataset first, then embed cells")
            return
        if self.runner.is_busy(MODEL_SLOT):
            self.model_busy()
            return
        if not self.engine_host.ensure(self._start_embed):
            self.no_model()

    def _start_embed(self) -> None:
        if self.dataset is None:
            return
        sel = self.selection.current
        rows = np.asarray(sel, dtype=np.int64) if len(sel) else None
        n = len(rows) if rows is not None else self.dataset.n_cells
        self.status.setText(f"Embedding {n:,} cells with the C2S model…")

        def run(dataset, options, progress, cancel) -> EmbedResult:  # noqa: ANN001
            engine = self.engine_host.engine()
            return embed_cells(dataset, engine, options, progress=progress, cancel=cancel)

        ds = self.dataset
        self.runner.start(
            MODEL_SLOT,
            audited(self, "embed", run, params={"cells": n}),
            ds,
            EmbedOptions(rows=rows),
            on_success=lambda result: (
                self.show_embedding_result(result) if self.dataset is ds else None
            ),
            on_failure=lambda exc: self._model_failed(exc, "Embedding failed"),
        )

    def show_embedding_result(self, result: EmbedResult) -> None:
        if self.dataset is None:
            return
        xy = embed_obsm(result, self.dataset.n_cells)[LAYOUT]
        self.set_result(TASK_EMBED, result)
        self.embeddings[C2S_EMBEDDING] = xy
        self.view.add_embedding(C2S_EMBEDDING)
        self.show_embedding(C2S_EMBEDDING)
        missing = self.dataset.n_cells - len(result.rows)
        self.status.setText(
            f"C2S embedding of {len(result.rows):,} cells ({result.embedding.shape[1]} dims) "
            f"shown as {C2S_EMBEDDING}"
            + (f"; {missing:,} cells not embedded are not drawn" if missing else "")
        )

    def _model_failed(self, exc: BaseException, title: str) -> None:
        if not self.engine_host.handle_failure(exc):
            self.report_error(exc, title)

    def connect_server(self) -> bool:
        """Ask for an OpenAI-compatible server and use its model instead of a local one."""
        from .panels.server import ServerDialog

        dialog = ServerDialog(self)
        if dialog.exec() != ServerDialog.DialogCode.Accepted:
            return False
        if not self.engine_host.connect_server(dialog.options()):
            self.model_busy()
            return False
        return True

    def show_audit_log(self) -> None:
        from .audit_dialog import AuditDialog

        AuditDialog(self).open()

    def _about(self) -> None:
        from .. import __version__

        try:
            from ..core.engine.backend import backend_info

            backend = backend_info().summary()
        except Exception as exc:  # noqa: BLE001 - the About box must open regardless
            backend = f"unknown ({exc})"
        QMessageBox.about(
            self,
            "About C2S Desktop",
            f"C2S Desktop {__version__}\nCell2Sentence language models on single-cell data, "
            f"offline.\n\nModels run on: {backend}",
        )

    # -- jobs and errors -----------------------------------------------------------------------
    def cancel_jobs(self) -> None:
        self.runner.cancel()
        self.status.setText("Cancelled")

    def _escape(self) -> None:
        self.view.cancel_shape()
        if self.runner.is_busy():
            self.cancel_jobs()

    def _on_progress(self, fraction: float, message: str) -> None:
        if fraction < 0:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * fraction))
        self.job_label.setText(message)

    def _show_busy(self, busy: bool) -> None:
        self.progress.setRange(0, 0)
        for w in (self.progress, self.cancel_button, self.job_label):
            w.setVisible(busy)
        if not busy:
            self.job_label.setText("")

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

    # -- drag and drop, closing ----------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802, ANN001
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802, ANN001
        urls = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.open_file(Path(urls[0]))

    def closeEvent(self, event) -> None:  # noqa: N802, ANN001
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.runner.cancel()
        self.runner.wait()
        self.engine_host.close()
        if self.dataset is not None:
            self.dataset.close()
        super().closeEvent(event)
