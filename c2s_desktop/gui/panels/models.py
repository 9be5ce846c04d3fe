"""Model manager: local models (provenance, hashes), import, convert, download; run options.

Also the toolbar's model picker. Listing, hashing, importing, converting and downloading run as
background jobs; the only network action (download) asks first and names the host.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ...core.engine.cores import physical_cores
from ...core.errors import Cancelled
from ...core.model_store import (
    QUANT_CHOICES,
    CatalogModel,
    LocalModel,
    catalog_models,
    convert_checkpoint,
    download_checkpoint,
    hub_host,
    import_model,
    list_models,
    models_dir,
    remove_model,
)
from ..dialogs import show_error
from ..engine_host import RunOptions, gpu_offload_supported, human_bytes

if TYPE_CHECKING:
    from ...core.adapters import AdapterInfo
    from ...core.recommend import Recommendation
    from ..context import Window

STORE_SLOT = "model-store"
LIST_SLOT = "model-list"
LOCAL_COLUMNS = ("", "Name", "Type", "Size", "Source", "Tasks", "sha256", "File")
ADAPTER_COLUMNS = ("", "Label column", "Labels", "Held-out accuracy", "Rank", "Size", "File")
CATALOG_COLUMNS = (
    "Model",
    "Tasks",
    "Parameters",
    "Download",
    "GGUF F16",
    "GGUF Q8_0",
    "GGUF Q4_K_M",
    "Licence",
)


def _item(text: str, tip: str = "") -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
    if tip:
        item.setToolTip(tip)
    return item


def _gb(value: float | None) -> str:
    return "?" if value is None else (f"{value:.2f} GB" if value < 10 else f"{value:.0f} GB")


def _params(n: int | None) -> str:
    if not n:
        return "?"
    return f"{n / 1e9:.1f} B" if n >= 1e9 else f"{n / 1e6:.0f} M"


def _tasks(model: LocalModel) -> str:
    if model.info is None:
        return ""
    from ...core.catalog import capabilities

    return ", ".join(sorted(capabilities(model.info.metadata).tasks))


class ModelManager(QDialog):
    """Local models, the C2S catalogue and how models run (threads, context, GPU layers)."""

    models_listed = Signal()

    def __init__(self, window: Window) -> None:
        super().__init__(window)
        self.window_ = window
        self.host = window.engine_host
        self.runner = window.runner
        self.setWindowTitle("Models")
        self.resize(1000, 560)
        self.models: list[LocalModel] = []
        self.catalog: list[CatalogModel] = catalog_models()
        self.last_box: QMessageBox | None = None
        self.tabs = QTabWidget()
        self.tabs.addTab(self._local_tab(), "Local models")
        self.tabs.addTab(self._catalog_tab(), "C2S catalogue")
        self.tabs.addTab(self._options_tab(), "Run options")
        self.state = QLabel()
        self.job_label = QLabel()
        self.job_bar = QProgressBar(maximumWidth=240)
        self.job_cancel = QPushButton("Cancel")
        self.job_cancel.clicked.connect(lambda: self.runner.cancel(STORE_SLOT))
        jobs = QHBoxLayout()
        jobs.addWidget(self.job_label, 1)
        jobs.addWidget(self.job_bar)
        jobs.addWidget(self.job_cancel)
        layout = QVBoxLayout(self)
        layout.addWidget(self.state)
        layout.addWidget(self.tabs, 1)
        layout.addLayout(jobs)
        self._show_job(False)
        self.host.changed.connect(self._host_changed)
        self.runner.progress.connect(self._progress)
        self._fill_catalog()
        self._host_changed()
        self.refresh()

    # -- tabs ----------------------------------------------------------------------------------
    def _local_tab(self) -> QWidget:
        self.table = QTableWidget(0, len(LOCAL_COLUMNS))
        self.table.setHorizontalHeaderLabels(LOCAL_COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.doubleClicked.connect(lambda _: self.load_selected())
        self.load_button = QPushButton("Load")
        self.load_button.clicked.connect(self.load_selected)
        self.unload_button = QPushButton("Unload")
        self.unload_button.clicked.connect(self.host.unload)
        self.import_button = QPushButton("Import GGUF…")
        self.import_button.clicked.connect(self.choose_import)
        self.convert_button = QPushButton("Convert a local checkpoint folder…")
        self.convert_button.clicked.connect(self.choose_convert)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove_selected)
        self.quant_box = QComboBox()
        self.quant_box.addItems(QUANT_CHOICES)
        self.quant_box.setToolTip("Type of the GGUF written by Convert / Download")
        self.folder_label = QLabel(f"Models folder: {models_dir()}")
        self.folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QHBoxLayout()
        for w in (self.load_button, self.unload_button, self.import_button):
            buttons.addWidget(w)
        buttons.addWidget(self.convert_button)
        buttons.addWidget(QLabel("as"))
        buttons.addWidget(self.quant_box)
        buttons.addStretch(1)
        buttons.addWidget(self.remove_button)
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        layout.addLayout(self._recommend_row())
        layout.addWidget(self._adapters_box())
        layout.addWidget(self.folder_label)
        self.table.itemSelectionChanged.connect(self.show_adapters)
        return page

    # -- LoRA adapters of the selected model (Tasks ▸ Train on these labels…) -------------------
    def _adapters_box(self) -> QGroupBox:
        self.adapters: list[AdapterInfo] = []
        self.adapter_table = QTableWidget(0, len(ADAPTER_COLUMNS))
        self.adapter_table.setHorizontalHeaderLabels(ADAPTER_COLUMNS)
        self.adapter_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.adapter_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.adapter_table.verticalHeader().hide()
        self.adapter_table.setMaximumHeight(150)
        header = self.adapter_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.adapter_table.doubleClicked.connect(lambda _: self.activate_adapter())
        self.adapter_load_button = QPushButton("Load with this adapter")
        self.adapter_load_button.clicked.connect(lambda: self.activate_adapter())
        self.adapter_remove_button = QPushButton("Remove adapter")
        self.adapter_remove_button.clicked.connect(self.remove_adapter_selected)
        row = QHBoxLayout()
        row.addWidget(self.adapter_load_button)
        row.addStretch(1)
        row.addWidget(self.adapter_remove_button)
        self.adapters_box = QGroupBox("Adapters of the selected model")
        box = QVBoxLayout(self.adapters_box)
        box.addWidget(self.adapter_table)
        box.addLayout(row)
        return self.adapters_box

    def show_adapters(self) -> None:
        """List the adapters trained for the selected model (``adapters_for``)."""
        from ...core.adapters import adapters_for
        from ...core.errors import C2SError

        model = self.selected_model()
        try:
            found = [] if model is None or model.problem else adapters_for(model.path)
        except C2SError:
            found = []
        self.adapters = found
        t = self.adapter_table
        t.setRowCount(len(found))
        active = self.host.adapter
        for r, a in enumerate(found):
            before = "?" if a.accuracy_before is None else f"{a.accuracy_before:.0%}"
            after = "?" if a.accuracy_after is None else f"{a.accuracy_after:.0%}"
            on = active is not None and Path(a.path) == active and self.host.is_loaded()
            cells = (
                "●" if on else "",
                a.label_key,
                ", ".join(a.labels),
                f"{before} → {after}",
                str(a.rank),
                human_bytes(a.size_bytes),
                Path(a.path).name,
            )
            for c, text in enumerate(cells):
                t.setItem(r, c, _item(text, str(a.path) if c == 6 else text))
        if found:
            t.selectRow(0)
        name = "the selected model" if model is None else model.name
        self.adapters_box.setTitle(f"Adapters of {name} ({len(found)})")
        for b in (self.adapter_load_button, self.adapter_remove_button):
            b.setEnabled(bool(found))

    def selected_adapter(self) -> AdapterInfo | None:
        row = self.adapter_table.currentRow()
        return self.adapters[row] if 0 <= row < len(self.adapters) else None

    def activate_adapter(self, adapter: AdapterInfo | None = None) -> bool:
        """Load the selected model with ``adapter`` (default: the selected one)."""
        model, adapter = self.selected_model(), adapter or self.selected_adapter()
        if model is None or adapter is None:
            return False
        if not self.host.load(model.path, adapter=Path(adapter.path)):
            self._say("The model is busy: Cancel (Esc) stops the running work, then load again")
            return False
        return True

    def remove_adapter_selected(self) -> None:
        adapter = self.selected_adapter()
        if adapter is None:
            return
        answer = QMessageBox.question(self, "Remove adapter", f"Delete the adapter {adapter.path}?")
        if answer == QMessageBox.StandardButton.Yes:
            self.remove_adapter(adapter)

    def remove_adapter(self, adapter: AdapterInfo) -> None:
        """Delete an adapter file (the base model is unloaded first if it runs with it)."""
        path = Path(adapter.path)
        if self.host.adapter is not None and self.host.adapter == path:
            self.host.unload()
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            self._failed(exc, "Cannot remove the adapter")
        self._say(f"Removed the adapter {path.name}")
        self.show_adapters()

    def _catalog_tab(self) -> QWidget:
        self.catalog_table = QTableWidget(0, len(CATALOG_COLUMNS))
        self.catalog_table.setHorizontalHeaderLabels(CATALOG_COLUMNS)
        self.catalog_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.catalog_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.catalog_table.verticalHeader().hide()
        header = self.catalog_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.download_quant = QComboBox()
        self.download_quant.addItems(QUANT_CHOICES)
        self.download_button = QPushButton("Download and convert…")
        self.download_button.setToolTip(
            f"Downloads the checkpoint from {hub_host()} (asks first), then converts it locally"
        )
        self.download_button.clicked.connect(self.download_selected)
        note = QLabel(
            "Sizes are estimates from the model cards. Downloading is the only network action "
            "of C2S Desktop and happens only when you confirm it; interrupted downloads resume."
        )
        note.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(QLabel("Type"))
        row.addWidget(self.download_quant)
        row.addWidget(self.download_button)
        row.addStretch(1)
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addWidget(self.catalog_table, 1)
        layout.addWidget(note)
        layout.addLayout(row)
        return page

    def _options_tab(self) -> QWidget:
        opts = self.host.options
        cores = os.cpu_count() or 1
        self.threads_spin = QSpinBox(minimum=0, maximum=max(1, cores))
        self.threads_spin.setSpecialValueText(f"auto ({physical_cores()} physical cores)")
        self.threads_spin.setValue(opts.threads)
        self.ctx_spin = QSpinBox(minimum=0, maximum=131072, singleStep=512)
        self.ctx_spin.setSpecialValueText("auto (from the model, at most 8192)")
        self.ctx_spin.setValue(opts.n_ctx)
        self.gpu_spin = QSpinBox(minimum=-1, maximum=999)
        self.gpu_spin.setSpecialValueText("all")
        self.gpu_spin.setValue(opts.n_gpu_layers)
        gpu = gpu_offload_supported()
        self.gpu_spin.setEnabled(gpu)
        self.gpu_spin.setToolTip(
            "Layers to run on the GPU (-1 = all)"
            if gpu
            else "This build of llama.cpp has no GPU support: models run on the CPU"
        )
        self.apply_button = QPushButton("Apply and reload the model")
        self.apply_button.clicked.connect(self.apply_options)
        form = QFormLayout()
        form.addRow("CPU threads", self.threads_spin)
        form.addRow("Context size (tokens)", self.ctx_spin)
        form.addRow("GPU layers", self.gpu_spin)
        form.addRow("", self.apply_button)
        box = QGroupBox("How models run")
        box.setLayout(form)
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addWidget(box)
        layout.addStretch(1)
        return page

    # -- listing -------------------------------------------------------------------------------
    def refresh(self) -> None:
        """List the models now (quick), then again with their sha256 (may take a while)."""
        self.runner.start(
            LIST_SLOT,
            list_models,
            on_success=self._listed_quick,
            on_failure=lambda exc: self._failed(exc, "Cannot list the models"),
        )

    def _listed_quick(self, models: list[LocalModel]) -> None:
        self._show_models(models)
        self.runner.start(
            LIST_SLOT,
            list_models,
            with_hashes=True,
            on_success=self._show_models,
            on_failure=lambda exc: self._failed(exc, "Cannot hash the models"),
        )

    def _show_models(self, models: list[LocalModel]) -> None:
        selected = self.selected_model()
        self.models = models
        t = self.table
        t.setRowCount(len(models))
        for r, m in enumerate(models):
            digest = m.sha256 or ("" if m.problem else "hashing…")
            source = " · ".join(x for x in (m.source, "bundled demo model" * m.bundled) if x)
            cells = (
                "",
                m.name,
                m.quant,
                human_bytes(m.size_bytes),
                source if not m.problem else f"unusable: {m.problem}",
                _tasks(m),
                digest[:12],
                m.path.name,
            )
            for c, text in enumerate(cells):
                tip = {6: m.sha256 or "", 7: str(m.path)}.get(c, text)
                t.setItem(r, c, _item(text, tip))
        self._mark_loaded()
        for r, m in enumerate(models):
            if selected is not None and m.path == selected.path:
                t.selectRow(r)
        if t.currentRow() < 0 and models:
            t.selectRow(0)
        self.models_listed.emit()

    def _mark_loaded(self) -> None:
        loaded = self.host.path
        for r, m in enumerate(self.models):
            item = self.table.item(r, 0)
            if item is not None:
                on = loaded is not None and m.path == loaded and self.host.is_loaded()
                item.setText("●" if on else "")
                item.setToolTip("loaded" if on else "")

    def _fill_catalog(self) -> None:
        t = self.catalog_table
        t.setRowCount(len(self.catalog))
        for r, m in enumerate(self.catalog):
            cells = (
                m.repo,
                ", ".join(m.tasks) or "; ".join(m.trained_tasks),
                _params(m.parameters),
                _gb(m.download_gb),
                _gb(m.gguf_gb.get("F16")),
                _gb(m.gguf_gb.get("Q8_0")),
                _gb(m.gguf_gb.get("Q4_K_M")),
                m.license,
            )
            tips = {1: "\n".join(m.trained_tasks), 7: m.license_note}
            for c, text in enumerate(cells):
                t.setItem(r, c, _item(text, tips.get(c, text)))
        if self.catalog:
            t.selectRow(0)
        else:
            self.download_button.setEnabled(False)
            self.download_button.setToolTip("the catalogue (c2s-quantize) is not installed")

    def selected_model(self) -> LocalModel | None:
        row = self.table.currentRow()
        return self.models[row] if 0 <= row < len(self.models) else None

    def select_path(self, path: Path) -> bool:
        """Select the row of ``path`` (for keyboard users and tests)."""
        for r, m in enumerate(self.models):
            if m.path == Path(path):
                self.table.selectRow(r)
                return True
        return False

    # -- actions -------------------------------------------------------------------------------
    def load_selected(self) -> None:
        model = self.selected_model()
        if model is None:
            return
        if model.problem:
            self._say(f"{model.path.name} cannot be used: {model.problem}")
            return
        if not self.host.load(model.path):
            self._say("The model is busy: Cancel (Esc) stops the running work, then load again")

    def choose_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Import a GGUF model", str(Path.home()), "GGUF models (*.gguf);;All files (*)"
        )
        if path:
            self.import_file(Path(path))

    def import_file(self, path: Path) -> None:
        """Validate ``path`` and copy it into the models folder (background)."""
        self._start(f"Importing {path.name}", import_model, path)

    def choose_convert(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Checkpoint folder (config.json, tokenizer, .safetensors)", str(Path.home())
        )
        if folder:
            self.convert_folder(Path(folder), self.quant_box.currentText())

    def convert_folder(self, folder: Path, qtype: str) -> None:
        """Convert + quantize a local checkpoint into the models folder (background)."""
        self._start(f"Converting {folder.name} to {qtype}", convert_checkpoint, folder, qtype)

    def download_selected(self) -> None:
        row = self.catalog_table.currentRow()
        if 0 <= row < len(self.catalog):
            self.ask_download(self.catalog[row].repo, self.download_quant.currentText())

    def ask_download(self, repo: str, qtype: str) -> QMessageBox:
        """Ask before any network use, naming the host; download only on "Download"."""
        entry = next((m for m in self.catalog if m.repo == repo), None)
        size = _gb(entry.download_gb) if entry else "unknown"
        licence = f"\nLicence: {entry.license}. {entry.license_note}" if entry else ""
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Download a model?",
            f"Download {repo} from {hub_host()} (about {size}) and convert it to {qtype}?",
            parent=self,
        )
        box.setInformativeText(
            f"C2S Desktop will connect to {hub_host()}. Nothing else leaves this computer; "
            f"the converted model is for your own use under its licence.{licence}"
        )
        go = box.addButton("Download", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        go.clicked.connect(lambda: self.download(repo, qtype))
        self.last_box = box
        box.open()
        return box

    def download(self, repo: str, qtype: str) -> None:
        """Download + convert (the user has confirmed); a local folder skips the download."""
        self._start(f"Downloading {repo}", download_checkpoint, repo, qtype)

    def remove_selected(self) -> None:
        model = self.selected_model()
        if model is None:
            return
        if model.bundled:
            self._say("The demo model is part of the app and cannot be removed")
            return
        if self.host.path == model.path:
            self.host.unload()
        answer = QMessageBox.question(
            self, "Remove model", f"Delete {model.path} from the models folder?"
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.remove(model)

    def remove(self, model: LocalModel) -> None:
        try:
            remove_model(model.path)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self._failed(exc, "Cannot remove the model")
        self.refresh()

    def apply_options(self) -> None:
        options = RunOptions(
            threads=self.threads_spin.value(),
            n_ctx=self.ctx_spin.value(),
            n_gpu_layers=self.gpu_spin.value() if self.gpu_spin.isEnabled() else 0,
        )
        self.host.set_options(options)
        if self.host.is_loaded() and not self.host.reload():
            self._say("The model is busy: the new options apply at the next load")

    # -- jobs ----------------------------------------------------------------------------------
    def _start(self, what: str, fn, *args) -> None:  # noqa: ANN001, ANN002
        if self.runner.is_busy(STORE_SLOT):
            self._say("Another import or conversion is running; wait or cancel it first")
            return
        self.job_label.setText(what + "…")
        self._show_job(True)
        self.runner.start(
            STORE_SLOT,
            fn,
            *args,
            on_success=self._stored,
            on_failure=lambda exc: self._failed(exc, what + " failed"),
        )

    def _stored(self, model: LocalModel) -> None:
        self._show_job(False)
        self._say(f"Added {model.path.name} ({model.quant}, {human_bytes(model.size_bytes)})")
        self.refresh()
        QTimer.singleShot(0, lambda: self.select_path(model.path))

    def _failed(self, exc: BaseException, title: str) -> None:
        self._show_job(False)
        if isinstance(exc, Cancelled):
            self._say("Cancelled; nothing was written (downloaded parts are kept for a resume)")
            return
        self.last_box = show_error(self, title, exc)

    def _progress(self, fraction: float, message: str) -> None:
        if not self.job_bar.isVisible():
            return
        if fraction < 0:
            self.job_bar.setRange(0, 0)
        else:
            self.job_bar.setRange(0, 1000)
            self.job_bar.setValue(int(1000 * fraction))
        if message:
            self.job_label.setText(message)

    def _show_job(self, busy: bool) -> None:
        for w in (self.job_bar, self.job_cancel):
            w.setVisible(busy)
        if busy:
            self.job_bar.setRange(0, 0)

    def _say(self, text: str) -> None:
        self.job_label.setText(text)

    def _host_changed(self) -> None:
        mem = human_bytes(self.host.memory_bytes()) if self.host.is_loaded() else ""
        self.state.setText(self.host.state_text() + (f" · memory {mem}" if mem else ""))
        self._mark_loaded()
        self.show_adapters()

    # -- which type to use here: measured on this machine (core.recommend) -----------------------
    def _recommend_row(self) -> QHBoxLayout:
        self.recommend_button = QPushButton("Measure types on this machine")
        self.recommend_button.setToolTip(
            "Times per-cell label scoring of each installed type of the selected model here "
            "and recommends the fastest whose labels agree with the most precise type"
        )
        self.recommend_button.clicked.connect(self.measure_types)
        self.recommend_label = QLabel()
        self.recommend_label.setWordWrap(True)
        self.recommend_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row = QHBoxLayout()
        row.addWidget(self.recommend_button)
        row.addWidget(self.recommend_label, 1)
        return row

    def measure_types(self) -> None:
        """Measure the selected model's installed types in the background; show s/cell each."""
        from ...core.engine.base import EngineOptions
        from ...core.recommend import recommend_type, variants_of

        model = self.selected_model()
        if model is None or model.problem:
            self._say("Select a usable model to measure its types")
            return
        if self.runner.is_busy(STORE_SLOT):
            self._say("Another job of the model manager is running; wait or cancel it first")
            return
        try:
            paths = variants_of(model.path, [m.path for m in self.models])
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self._failed(exc, "Cannot measure the types")
            return
        self.job_label.setText(f"Measuring {len(paths)} type(s) of {model.name}…")
        self.recommend_label.setText("measuring…")
        self._show_job(True)
        self.runner.start(
            STORE_SLOT,
            recommend_type,
            paths,
            options=EngineOptions(threads=self.host.options.threads or None),
            on_success=self._types_measured,
            on_failure=self._types_failed,
        )

    def _types_measured(self, result: Recommendation) -> None:
        self._show_job(False)
        each = " · ".join(
            f"{m.quant} {m.seconds_per_cell:.2f} s/cell (labels "
            f"{round(m.agreement * result.n_cells)}/{result.n_cells})"
            for m in result.measurements
        )
        when = " (remembered)" if result.cached else ""
        self.recommend_label.setText(f"Recommended here{when}: {result.summary()}\n{each}")
        self.recommend_label.setToolTip(
            f"{result.n_cells} demo cells x {result.n_labels} labels, timed in the model process"
        )
        self._say(f"Recommended type for this machine: {result.chosen.quant}")

    def _types_failed(self, exc: BaseException) -> None:
        self.recommend_label.setText("")
        self._failed(exc, "Cannot measure the types")


class ModelPicker(QToolButton):
    """Toolbar button: ``Model: NAME QUANT ● loaded, CPU n thr · 45 MB``; menu of local models."""

    def __init__(self, window: Window) -> None:
        super().__init__(window)
        self.window_ = window
        self.host = window.engine_host
        self.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.setMenu(QMenu(self))
        self.menu().aboutToShow.connect(self._fill_menu)
        self.clicked.connect(window.show_model_manager)
        self.setToolTip("The model tasks use; click for the model manager (Ctrl+M)")
        self.host.changed.connect(self.update_text)
        self.timer = QTimer(self, interval=2000)
        self.timer.timeout.connect(self.update_text)
        self.timer.start()
        self.update_text()

    def update_text(self) -> None:
        text = self.host.state_text()
        if self.host.is_loaded():
            text += f" · {human_bytes(self.host.memory_bytes())}"
        self.setText(text)

    def _fill_menu(self) -> None:
        menu = self.menu()
        menu.clear()
        for model in list_models():
            if model.problem:
                continue
            action = menu.addAction(f"{model.name} {model.quant}  ({model.path.name})")
            action.setCheckable(True)
            action.setChecked(model.path == self.host.path and self.host.is_loaded())
            action.triggered.connect(lambda _=False, p=model.path: self.window_.load_model(p))
        menu.addSeparator()
        menu.addAction("Models…", self.window_.show_model_manager)
        unload = menu.addAction("Unload", self.host.unload)
        unload.setEnabled(self.host.is_loaded())
