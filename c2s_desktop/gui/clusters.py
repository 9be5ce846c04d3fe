"""Cluster names: the user's names for the clusters of one obs column (``leiden`` by default).

Names are kept as a mapping cluster → name in the window's session (autosaved and restored
with the dataset) and shown as the in-memory obs column ``cluster_names`` (categorical, clusters
without a name keep their id): a category in the view, a candidate-label source in the annotate
dock. Rename from the legend (right-click) or the markers view (double-click a cluster).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
from PySide6.QtCore import QObject, QPoint, Qt, Signal
from PySide6.QtWidgets import QInputDialog, QMenu

from ..core.preprocess import CLUSTER_KEY

if TYPE_CHECKING:
    from .context import Window

NAMES_COLUMN = "cluster_names"


def names_column(clusters: pd.Series, names: dict[str, str]) -> pd.Categorical:
    """Per-cell names of ``clusters`` (categorical, in cluster order; unnamed keep their id)."""
    text = clusters.astype(object).where(clusters.notna(), None)
    order = (
        [str(c) for c in clusters.cat.categories]
        if isinstance(clusters.dtype, pd.CategoricalDtype)
        else sorted({str(v) for v in text.dropna()})
    )
    label = {c: names.get(c, "").strip() or c for c in order}
    values = [None if v is None else label[str(v)] for v in text]
    return pd.Categorical(values, categories=list(dict.fromkeys(label.values())))


class ClusterNames(QObject):
    """Renames clusters of the open dataset and keeps the ``cluster_names`` column in step."""

    changed = Signal()

    def __init__(self, window: Window) -> None:
        super().__init__(window)
        self.window = window
        self.source = CLUSTER_KEY
        self.names: dict[str, str] = {}
        self.revision = 0
        self.dialog: QInputDialog | None = None
        legend = window.view.legend
        legend.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        legend.customContextMenuRequested.connect(self._legend_menu)
        window.dataset_closing.connect(self._reset)

    def _reset(self) -> None:
        self.source, self.names = CLUSTER_KEY, {}
        self.revision += 1

    def source_of(self, column: str | None) -> str | None:
        """The cluster column behind a colouring (``cluster_names`` → its source)."""
        ds = self.window.dataset
        if ds is None or column is None:
            return None
        if column == NAMES_COLUMN:
            return self.source
        return column if column in ds.obs.columns else None

    def display(self, cluster: str) -> str:
        """A cluster's name (its id when unnamed)."""
        return self.names.get(str(cluster), "") or str(cluster)

    def clusters_named(self, name: str) -> list[str]:
        """The clusters shown under ``name`` (several when two were given one name)."""
        ds = self.window.dataset
        if ds is None or self.source not in ds.obs.columns:
            return []
        col = ds.obs[self.source].dropna().astype(str).unique()
        return sorted(c for c in col if self.display(c) == name)

    # -- renaming --------------------------------------------------------------------------
    def rename(self, cluster: str, name: str, source: str | None = None) -> None:
        """Name ``cluster`` of ``source`` (default: the current source); empty name = its id."""
        source = source or self.source
        if source != self.source:
            self.source, self.names = source, {}
        cluster, name = str(cluster), " ".join(name.split())
        if name and name != cluster:
            self.names[cluster] = name
        else:
            self.names.pop(cluster, None)
        self.revision += 1
        self.apply()
        self.window.status.setText(
            f"Cluster {cluster} of {source} is now '{self.display(cluster)}'"
        )

    def set_names(self, source: str, names: dict[str, str]) -> None:
        """Restore names (from a session) and show them."""
        self.source, self.names = source or CLUSTER_KEY, {str(k): str(v) for k, v in names.items()}
        self.revision += 1
        if self.names:
            self.apply(show=False)

    def apply(self, show: bool = True) -> None:
        """Write ``cluster_names`` into the dataset's obs (memory) and list it everywhere."""
        w = self.window
        ds = w.dataset
        if ds is None or self.source not in ds.obs.columns:
            return
        ds.obs[NAMES_COLUMN] = names_column(ds.obs[self.source], self.names)
        w.add_obs_category(NAMES_COLUMN, show)
        w.annotate_panel.add_candidate_source(NAMES_COLUMN)
        self.changed.emit()

    def ask_rename(self, cluster: str, source: str | None = None) -> QInputDialog:
        """Ask for a new name (non-blocking dialog; returned for tests)."""
        source = source or self.source
        dialog = QInputDialog(self.window)
        dialog.setWindowTitle("Rename cluster")
        dialog.setLabelText(f"Name of cluster {cluster} ({source}):")
        dialog.setTextValue(self.display(cluster) if source == self.source else str(cluster))
        dialog.textValueSelected.connect(lambda text: self.rename(cluster, text, source))
        self.dialog = dialog
        dialog.open()
        return dialog

    def _legend_menu(self, pos: QPoint) -> None:
        view = self.window.view
        item = view.legend.itemAt(pos)
        source = self.source_of(view.colour_column)
        if item is None or source is None:
            return
        shown = str(item.data(Qt.ItemDataRole.UserRole))
        clusters = self.clusters_named(shown) if view.colour_column == NAMES_COLUMN else [shown]
        menu = QMenu(view.legend)
        for cluster in clusters:
            action = menu.addAction(f"Rename cluster {cluster}…")
            action.triggered.connect(lambda _=False, c=cluster: self.ask_rename(c, source))
        menu.popup(view.legend.viewport().mapToGlobal(pos))
