"""The main window's cell selection: showing it, its top genes and sentences, saved selections
kept beside the dataset (restored when it opens again), and the CSV export.

A mixin of :class:`.main_window.MainWindow`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtWidgets import QFileDialog

from ..core.errors import C2SError
from ..core.markers import top_genes
from ..core.selection import (
    MODE_REPLACE,
    SelectionModel,
    export_csv,
    load_selections,
    save_selections,
    session_file,
)
from ..core.sentences import cell_sentences


class WindowSelection:
    """Select cells, save and restore named selections, export them."""

    def _reset_selection(self, n_cells: int) -> None:
        """A new, empty selection model for ``n_cells`` cells; its changes become signals."""
        self.selection = SelectionModel(n_cells)
        self.selection.subscribe(self.selection_changed.emit)
        self.selection_changed.emit()

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
