"""Opening a dataset in the main window: file and folder dialogs, recent files, drag and drop,
the background open job, and re-reading with other source/symbol choices.

A mixin of :class:`.main_window.MainWindow`.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from ..core.dataset import Dataset, DatasetInfo, open_dataset
from ..core.embedding import gene_names
from ..core.progress import CancelToken, ProgressFn, no_progress

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


class WindowOpening:
    """Open a file (menu, toolbar, Ctrl+O, drag and drop, recent files) in the background."""

    def recent_files(self) -> list[str]:
        value = self.settings.value("recent_files", [])
        return [str(v) for v in (value if isinstance(value, list) else [value]) if v]

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        for item in self.recent_files():
            action = self.recent_menu.addAction(item)
            action.triggered.connect(lambda _=False, p=item: self.open_file(Path(p)))
        self.recent_menu.setEnabled(bool(self.recent_files()))

    def _start_folder(self) -> str:
        """Where the open dialogs start: the folder of the last file opened, else home."""
        recent = self.recent_files()
        return str(Path(recent[0]).parent) if recent else str(Path.home())

    def choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Open dataset",
            self._start_folder(),
            "Single-cell data (*.h5ad *.h5);;AnnData (*.h5ad);;Cell Ranger (*.h5);;All files (*)",
        )
        if path:
            self.open_file(Path(path))

    def choose_folder(self) -> None:
        """Open a Cell Ranger matrix folder (matrix.mtx[.gz], features.tsv[.gz], barcodes)."""
        path = QFileDialog.getExistingDirectory(
            self, "Open Cell Ranger matrix folder", self._start_folder()
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
