"""The main window's menus, keyboard shortcuts and toolbar, and the small actions behind them.

A mixin of :class:`.main_window.MainWindow`: every action calls a window method.
"""

from __future__ import annotations

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QMessageBox, QToolBar

from ..core.model_store import demo_model_path
from .actions import window_action
from .panels.models import ModelPicker
from .plot import TOOL_LASSO, TOOL_PAN, TOOL_RECT


class WindowMenus:
    """File, Edit, Selection, Model, Tasks, View and Help menus; the main toolbar."""

    def _action(self, text: str, slot, shortcut=None, menu=None) -> QAction:  # noqa: ANN001
        return window_action(self, text, slot, shortcut, menu)  # type: ignore[arg-type]

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

    def cancel_jobs(self) -> None:
        self.runner.cancel()
        self.status.setText("Cancelled")

    def _escape(self) -> None:
        self.view.cancel_shape()
        if self.runner.is_busy():
            self.cancel_jobs()

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
