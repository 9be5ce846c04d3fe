"""The main window: open a dataset and show what was detected."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEventLoop, QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTextBrowser,
)

from ..core.dataset import Dataset, DatasetInfo, open_dataset
from ..core.errors import C2SError
from ..core.logs import log_exception
from .jobs import Job


def _load(path: Path) -> tuple[Dataset, DatasetInfo]:
    ds = open_dataset(path)
    return ds, ds.info()


def describe(info: DatasetInfo) -> str:
    """The data panel's text (HTML) for ``info``."""
    rows = "".join(
        f"<tr><td>{s.name}{' ✓' if s.name == info.source else ''}</td><td>{s.detail}</td></tr>"
        for s in info.sources
    )
    emb = ", ".join(f"{k} ({d}-D)" for k, d in info.embeddings.items()) or "none"
    cols = ", ".join(f"{k} ({n})" for k, n in info.obs_columns.items()) or "none"
    warn = "".join(f"<li>{w}</li>" for w in info.warnings)
    return (
        f"<h3>{Path(info.path).name}</h3><p>{info.n_cells:,} cells × {info.n_genes:,} genes"
        f"{' (read from disk)' if info.backed else ''}</p>"
        f"<table>{rows}</table><p>Gene symbols: {info.symbols_source}<br>"
        f"Organism: {info.organism} ({info.organism_from})<br>Embeddings: {emb}<br>"
        f"Categories: {cols}</p>" + (f"<ul>{warn}</ul>" if warn else "")
    )


class MainWindow(QMainWindow):
    """Open a file (menu, Ctrl+O, drag and drop, recent files) and show the data summary."""

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("C2S Desktop")
        self.resize(1100, 720)
        self.setAcceptDrops(True)
        self.settings = QSettings()
        self.dataset: Dataset | None = None
        self.job: Job | None = None
        self.summary = QTextBrowser()
        self.summary.setHtml("<p>Open an .h5ad file (File → Open, Ctrl+O, or drop it here).</p>")
        self.setCentralWidget(self.summary)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.cancel_button.clicked.connect(self.cancel_job)
        self.status = QLabel("Ready")
        self.statusBar().addWidget(self.status, 1)
        self.statusBar().addPermanentWidget(self.progress)
        self.statusBar().addPermanentWidget(self.cancel_button)
        self.recent_menu = None
        self._build_menu()

    def _build_menu(self) -> None:
        menu = self.menuBar().addMenu("&File")
        open_action = QAction("&Open…", self, shortcut=QKeySequence.StandardKey.Open)
        open_action.triggered.connect(self.choose_file)
        menu.addAction(open_action)
        self.recent_menu = menu.addMenu("Open &Recent")
        self._refresh_recent()
        quit_action = QAction("&Quit", self, shortcut=QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        menu.addAction(quit_action)

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        for item in self.recent_files():
            action = self.recent_menu.addAction(item)
            action.triggered.connect(lambda _=False, p=item: self.open_file(Path(p)))

    def recent_files(self) -> list[str]:
        value = self.settings.value("recent_files", [])
        return [str(v) for v in (value if isinstance(value, list) else [value]) if v]

    def choose_file(self) -> None:
        start = self.recent_files()[0] if self.recent_files() else str(Path.home())
        path, _ = QFileDialog.getOpenFileName(
            self, "Open dataset", str(Path(start).parent), "AnnData (*.h5ad);;All files (*)"
        )
        if path:
            self.open_file(Path(path))

    def open_file(self, path: Path) -> None:
        """Open ``path`` in the background; the window stays responsive."""
        if self.job is not None and self.job.is_running():
            return
        self.status.setText(f"Opening {path.name}…")
        self.progress.show()
        self.cancel_button.show()
        self.job = Job(_load, Path(path))
        self.job.succeeded.connect(self._loaded)
        self.job.failed.connect(lambda exc: self._failed(exc, path))
        self.job.done.connect(self._job_done)
        self.job.start()

    def cancel_job(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def _job_done(self) -> None:
        self.progress.hide()
        self.cancel_button.hide()

    def _loaded(self, result: tuple[Dataset, DatasetInfo]) -> None:
        if self.dataset is not None:
            self.dataset.close()
        self.dataset, info = result
        self.summary.setHtml(describe(info))
        self.status.setText(f"{info.n_cells:,} cells × {info.n_genes:,} genes")
        recent = [info.path] + [p for p in self.recent_files() if p != info.path]
        self.settings.setValue("recent_files", recent[:10])
        self._refresh_recent()

    def _failed(self, exc: object, path: Path) -> None:
        self.status.setText("Could not open the file")
        if isinstance(exc, C2SError):
            text, detail = exc.message, exc.hint
        else:
            log = log_exception(exc if isinstance(exc, BaseException) else Exception(exc))
            text, detail = f"Unexpected error: {exc}", f"Details were written to {log}"
        box = QMessageBox(
            QMessageBox.Icon.Warning, "Cannot open file", f"{path}\n\n{text}", parent=self
        )
        box.setInformativeText(detail)
        box.open()

    def wait_until_idle(self, timeout_ms: int = 60_000) -> None:
        """Process events until the current background job has finished."""
        if self.job is None or not self.job.is_running():
            return
        loop = QEventLoop()
        self.job.done.connect(loop.quit)
        QTimer.singleShot(timeout_ms, loop.quit)
        loop.exec()

    # drag and drop
    def dragEnterEvent(self, event) -> None:  # noqa: N802, ANN001
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802, ANN001
        urls = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.open_file(Path(urls[0]))

    def closeEvent(self, event) -> None:  # noqa: N802, ANN001
        if self.job is not None and self.job.is_running():
            self.job.cancel()
            self.job.thread.quit()
            self.job.thread.wait(5000)
        if self.dataset is not None:
            self.dataset.close()
        super().closeEvent(event)


_ = Qt  # Qt enums are used by subclasses and tests
