"""The main window's frame: docks (listed in the View menu), the status bar with job progress,
and the saved geometry and dock layout.

A mixin of :class:`.main_window.MainWindow`; it uses the window's ``settings``, ``menus`` and
``runner``.
"""

from __future__ import annotations

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtWidgets import QDockWidget, QLabel, QProgressBar, QPushButton, QScrollArea, QWidget


class WindowLayout:
    """Docks, status bar and saved layout of the main window."""

    def _build_docks(self) -> None:
        """Data on the left; Selection and Annotate tabbed on the right."""
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

    def _restore_settings(self) -> None:
        geometry = self.settings.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        state = self.settings.value("window/state")
        if isinstance(state, QByteArray):
            self.restoreState(state)

    def _save_settings(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
