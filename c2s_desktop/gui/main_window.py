"""The main window: data panel | embedding view | selection panel, jobs in the status bar.

Widgets only show state and forward requests; every read of the expression matrix runs as a
background job (:class:`JobRunner`), one current job per kind, so the window stays responsive.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QByteArray, QEventLoop, QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
)

from ..core.dataset import Dataset, DatasetInfo, open_dataset
from ..core.embedding import PCA_KEY, compute_pca, gene_expression, gene_names
from ..core.errors import C2SError, Cancelled
from ..core.markers import top_genes
from ..core.progress import CancelToken, ProgressFn, no_progress
from ..core.selection import (
    MODE_REPLACE,
    SelectionModel,
    export_csv,
    load_selections,
    save_selections,
    session_file,
)
from ..core.sentence_writer import cell_sentences
from .dialogs import show_error
from .jobs import JobRunner
from .panels.data import DataPanel
from .panels.selection import SelectionPanel
from .plot import TOOL_LASSO, TOOL_PAN, TOOL_RECT, EmbeddingView

MAX_RECENT = 10


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

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("C2S Desktop")
        self.resize(1400, 820)
        self.setAcceptDrops(True)
        self.settings = QSettings()
        self.dataset: Dataset | None = None
        self.selection = SelectionModel(0)
        self.embeddings: dict[str, np.ndarray] = {}
        self.last_error: QMessageBox | None = None
        self.runner = JobRunner(self)
        self.view = EmbeddingView()
        self.setCentralWidget(self.view)
        self.data_panel = DataPanel()
        self.selection_panel = SelectionPanel()
        self._dock("Data", self.data_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self._dock("Selection", self.selection_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self._build_status()
        self._build_actions()
        self._connect()
        self._restore_settings()

    # -- construction --------------------------------------------------------------------------
    def _dock(self, title: str, widget, area: Qt.DockWidgetArea) -> None:  # noqa: ANN001
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{title.lower()}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)

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
        self.statusBar().addPermanentWidget(QLabel("Offline"))
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
        file_menu = bar.addMenu("&File")
        self.open_action = self._action(
            "&Open…", self.choose_file, QKeySequence.StandardKey.Open, file_menu
        )
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self._refresh_recent()
        self._action("&Export selection (CSV)…", self.choose_export, "Ctrl+E", file_menu)
        file_menu.addSeparator()
        self._action("&Quit", self.close, QKeySequence.StandardKey.Quit, file_menu)
        sel = bar.addMenu("&Selection")
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
        self._action("Cancel lasso / work", self._escape, "Esc")
        view_menu = bar.addMenu("&View")
        for dock in self.findChildren(QDockWidget):
            view_menu.addAction(dock.toggleViewAction())
        tools = self.addToolBar("Main")
        tools.setObjectName("toolbar_main")
        tools.addAction(self.open_action)

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
            self, "Open dataset", start, "AnnData (*.h5ad);;All files (*)"
        )
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
            on_failure=lambda exc: self._failed(exc, "Cannot open file", path),
            discard=_close,
        )

    def _loaded(self, result: tuple[Dataset, DatasetInfo]) -> None:
        for slot in ("gene", "pca", "markers", "sentences", "reselect"):
            self.runner.cancel(slot)
        old, (self.dataset, info) = self.dataset, result
        if old is not None:
            self._close_when_idle(old)
        ds = self.dataset
        self.embeddings = {}
        self.selection = SelectionModel(ds.n_cells)
        self.data_panel.show_dataset(ds, info)
        categories = list(info.obs_columns)
        self.selection_panel.set_obs(ds.obs, categories)
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
            on_failure=lambda exc: self._failed(exc, "Cannot use these choices"),
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
            self._failed(exc, "Cannot show the embedding")

    def compute_pca(self) -> None:
        if self.dataset is not None:
            self.runner.start(
                "pca",
                compute_pca,
                self.dataset,
                on_success=self._pca_done,
                on_failure=lambda exc: self._failed(exc, "PCA failed"),
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
                on_failure=lambda exc: self._failed(exc, "Cannot colour by gene"),
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
                on_failure=lambda exc: self._failed(exc, "Top genes failed"),
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
            on_failure=lambda exc: self._failed(exc, "Cell sentences failed"),
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
            self._failed(exc, "Cannot save the selection")
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
            self._failed(exc, "Cannot save the session")

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
            self._failed(exc, "Cannot export")
            return None
        self.status.setText(f"Exported {len(self.selection.current):,} cells to {out}")
        return out

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

    def _failed(self, exc: BaseException, title: str, path: Path | None = None) -> None:
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
        if self.dataset is not None:
            self.dataset.close()
        super().closeEvent(event)
