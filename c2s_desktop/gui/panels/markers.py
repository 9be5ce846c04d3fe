"""Markers dock: a dot plot of the clusters' top markers and a sortable DE table.

Cluster markers come from :func:`rank_markers` (scanpy's Wilcoxon test, every cluster against
the rest; a prepared file's stored ``rank_genes_groups`` is reused by the core), the dot plot
from :func:`dot_plot_table` (dot size = fraction of cells expressing, colour = mean
log-normalised expression). "Markers of selection" tests the current selection against the rest.
Everything is computed off the GUI thread. Double-click a gene to colour the map by it,
a cluster to rename it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ...core.dataset import Dataset
from ...core.de import SELECTION, dot_plot_table, rank_markers, top_markers_per_group
from ...core.preprocess import CLUSTER_KEY
from ..actions import window_action
from ..clusters import NAMES_COLUMN
from .prepare import data_menu

if TYPE_CHECKING:
    from ..context import Window

DE_SLOT = "de"
SHORTCUT = "Ctrl+Shift+M"
COLUMNS = ("Group", "Gene", "log2 FC", "p", "adj. p", "% in", "% out")
MAX_GROUPS = 100
"""Columns with more groups than this are not offered (a test per group would take long)."""
N_DOT_GENES = 3
MIN_DOT, MAX_DOT = 3.0, 22.0
AXIS_CHARS = 6
"""Longer group names are shortened on the dot plot's axis (and listed in full below it)."""


class _Number(QTableWidgetItem):
    """A table cell shown formatted but sorted by its value."""

    def __init__(self, value: float, text: str) -> None:
        super().__init__(text)
        self.value = float(value)
        self.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        if isinstance(other, _Number):
            return self.value < other.value
        return super().__lt__(other)


def cluster_markers(
    dataset: Dataset, groupby: str, progress: Any, cancel: Any
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """DE table of every group of ``groupby`` vs the rest, and the dot plot of their top genes."""
    table = rank_markers(dataset, groupby=groupby, progress=progress, cancel=cancel)
    genes = top_markers_per_group(table, N_DOT_GENES)
    fraction, mean = dot_plot_table(dataset, groupby, genes)
    return table, fraction, mean


def selection_markers(dataset: Dataset, rows: np.ndarray, progress: Any, cancel: Any) -> Any:
    """DE table of the selected rows vs the other cells."""
    return rank_markers(dataset, rows=rows, progress=progress, cancel=cancel)


class DotPlot(QWidget):
    """Top markers (rows) × groups (columns): dot area = fraction expressing, colour = mean."""

    def __init__(self) -> None:
        super().__init__()
        self.plot = pg.PlotWidget(background="w")
        self.plot.setMenuEnabled(False)
        self.plot.invertY(True)  # the first group's markers at the top
        self.scatter = pg.ScatterPlotItem(pen=pg.mkPen("#555", width=0.5))
        self.plot.addItem(self.scatter)
        self.cmap = pg.colormap.get("viridis")
        self.groups: list[str] = []
        self.genes: list[str] = []
        self.group_labels: list[str] = []
        self.caption = QLabel("")
        self.caption.setWordWrap(True)
        self.names = QLabel("")
        self.names.setWordWrap(True)
        self.names.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.names)
        layout.addWidget(self.caption)

    def show_table(
        self, fraction: pd.DataFrame, mean: pd.DataFrame, labels: dict[str, str] | None = None
    ) -> None:
        """Draw ``fraction`` / ``mean`` (groups × genes); ``labels`` renames groups on the axis."""
        self.groups = [str(g) for g in fraction.index]
        self.genes = [str(g) for g in fraction.columns]
        frac = fraction.to_numpy(dtype=np.float64).T  # genes × groups
        avg = mean.reindex(index=fraction.index, columns=fraction.columns).to_numpy(np.float64).T
        gene_row, group_col = np.indices(frac.shape)
        top = float(np.nanmax(avg)) if avg.size and np.nanmax(avg) > 0 else 1.0
        colours = self.cmap.map(np.nan_to_num(avg.ravel() / top), mode="qcolor")
        sizes = MIN_DOT + (MAX_DOT - MIN_DOT) * np.sqrt(np.clip(frac.ravel(), 0, 1))
        self.scatter.setData(
            x=group_col.ravel().astype(float),
            y=gene_row.ravel().astype(float),
            size=sizes,
            brush=colours,
        )
        self.plot.getAxis("left").setTicks([list(enumerate(self.genes))])
        self.set_labels(labels or {})
        self.plot.setXRange(-0.6, max(len(self.groups), 1) - 0.4, padding=0)
        self.plot.setYRange(-0.6, max(len(self.genes), 1) - 0.4, padding=0)
        self.caption.setText(
            f"Top markers of each group. Dot size: fraction of cells expressing (largest "
            f"{np.nanmax(frac):.0%}); colour: mean log-normalised expression (viridis, 0 to "
            f"{top:.2g})."
            if frac.size
            else ""
        )

    def set_labels(self, labels: dict[str, str]) -> None:
        """Name the groups on the axis (renamed clusters)."""
        self.group_labels = [labels.get(g, g) for g in self.groups]
        short = [
            t if len(t) <= AXIS_CHARS else t[: AXIS_CHARS - 1] + "…" for t in self.group_labels
        ]
        self.plot.getAxis("bottom").setTicks([list(enumerate(short))])
        named = [f"{g} = {labels[g]}" for g in self.groups if labels.get(g, g) != g]
        self.names.setText("Groups: " + "; ".join(named) if named else "")
        self.names.setVisible(bool(named))

    def clear(self) -> None:
        self.groups, self.genes, self.group_labels = [], [], []
        self.scatter.setData([], [])
        self.caption.setText("")


class MarkersPanel(QWidget):
    """Group-by picker, buttons, dot plot and DE table; the controller fills them."""

    clusters_requested = Signal(str)
    selection_requested = Signal()
    gene_activated = Signal(str)
    group_activated = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.groupby_box = QComboBox(toolTip="The obs column whose groups are compared")
        self.clusters_button = QPushButton("Markers of clusters")
        self.clusters_button.setToolTip("Every group against the rest (Wilcoxon, BH-adjusted)")
        self.selection_button = QPushButton("Markers of selection")
        self.selection_button.setToolTip("The selected cells against all the others")
        self.group_filter = QComboBox(toolTip="Show the markers of one group")
        self.status = QLabel("Open a dataset with clusters, or prepare one.")
        self.status.setWordWrap(True)
        self.dot_plot = DotPlot()
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSortingEnabled(True)
        self.table.verticalHeader().hide()
        self.table.setToolTip("Double-click a gene to colour the map by it, a group to rename it")
        top = QHBoxLayout()
        top.addWidget(QLabel("Groups"))
        top.addWidget(self.groupby_box, 1)
        top.addWidget(self.clusters_button)
        top.addWidget(self.selection_button)
        table_box = QWidget()
        tl = QVBoxLayout(table_box)
        tl.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Show"))
        row.addWidget(self.group_filter, 1)
        tl.addLayout(row)
        tl.addWidget(self.table, 1)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.dot_plot, "Dot plot")
        self.tabs.addTab(table_box, "Table")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(self.status)
        layout.addWidget(self.tabs, 1)
        self.labels: dict[str, str] = {}
        self.frame = pd.DataFrame(columns=["group", "gene"])
        self.clusters_button.clicked.connect(
            lambda: self.clusters_requested.emit(self.groupby_box.currentText())
        )
        self.selection_button.clicked.connect(self.selection_requested)
        self.group_filter.currentIndexChanged.connect(lambda _: self._fill())
        self.table.itemDoubleClicked.connect(self._double_clicked)

    def set_groupings(self, columns: list[str], current: str | None) -> None:
        self.groupby_box.blockSignals(True)
        self.groupby_box.clear()
        self.groupby_box.addItems(columns)
        if current in columns:
            self.groupby_box.setCurrentText(current)
        self.groupby_box.blockSignals(False)
        self.clusters_button.setEnabled(bool(columns))

    def show_markers(self, table: pd.DataFrame, labels: dict[str, str] | None = None) -> None:
        """Fill the DE table from ``table`` (core columns); ``labels`` names the groups."""
        self.frame = table.reset_index(drop=True)
        self.labels = dict(labels or {})
        groups = [str(g) for g in dict.fromkeys(self.frame["group"].astype(str))]
        self.group_filter.blockSignals(True)
        self.group_filter.clear()
        self.group_filter.addItem("all groups", None)
        for g in groups:
            self.group_filter.addItem(self.labels.get(g, g), g)
        self.group_filter.blockSignals(False)
        self._fill()

    def set_labels(self, labels: dict[str, str]) -> None:
        """Rename groups in the table and filter (after a cluster was renamed)."""
        self.labels = dict(labels)
        for i in range(1, self.group_filter.count()):
            g = self.group_filter.itemData(i)
            self.group_filter.setItemText(i, self.labels.get(g, g))
        self._fill()

    def genes(self) -> list[str]:
        """The genes listed in the table, top to bottom."""
        return [self.table.item(r, 1).text() for r in range(self.table.rowCount())]

    def _fill(self) -> None:
        group = self.group_filter.currentData()
        df = self.frame
        if group is not None and len(df):
            df = df[df["group"].astype(str) == group]
        order = {g: i for i, g in enumerate(dict.fromkeys(self.frame["group"].astype(str)))}
        self.table.setSortingEnabled(False)
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.table.setRowCount(len(df))
        for r, rec in enumerate(df.itertuples(index=False)):
            g = str(rec.group)
            group_item = _Number(order[g] + rec.rank / 1e6, self.labels.get(g, g))
            group_item.setTextAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
            group_item.setData(Qt.ItemDataRole.UserRole, g)
            gene_item = QTableWidgetItem(str(rec.gene))
            gene_item.setData(Qt.ItemDataRole.UserRole, str(rec.gene))
            cells = [
                group_item,
                gene_item,
                _Number(rec.logfoldchange, f"{rec.logfoldchange:.2f}"),
                _Number(rec.pval, f"{rec.pval:.2e}"),
                _Number(rec.pval_adj, f"{rec.pval_adj:.2e}"),
                _Number(rec.pct_group, f"{100 * rec.pct_group:.1f}"),
                _Number(rec.pct_rest, f"{100 * rec.pct_rest:.1f}"),
            ]
            for c, item in enumerate(cells):
                self.table.setItem(r, c, item)
        self.table.setSortingEnabled(True)
        self.table.resizeColumnsToContents()

    def _double_clicked(self, item: QTableWidgetItem) -> None:
        row = item.row()
        if item.column() == 0:
            group = self.table.item(row, 0).data(Qt.ItemDataRole.UserRole)
            if group != SELECTION:
                self.group_activated.emit(str(group))
        else:
            self.gene_activated.emit(self.table.item(row, 1).text())


class MarkersController(QObject):
    """The Markers dock: computes cluster / selection markers and reacts to the table."""

    def __init__(self, window: Window) -> None:
        super().__init__(window)
        self.window = window
        self.panel = MarkersPanel()
        self.dock = window.add_dock("Markers", self.panel, Qt.DockWidgetArea.RightDockWidgetArea)
        beside = window.findChild(QDockWidget, "dock_selection")
        if beside is not None:  # a tab beside Selection: the dot plot gets the dock's height
            window.tabifyDockWidget(beside, self.dock)
            beside.raise_()
        self.groupby: str | None = None
        self.table: pd.DataFrame | None = None
        self.action = window_action(window, "&Marker genes", self.show, SHORTCUT, data_menu(window))
        p = self.panel
        p.clusters_requested.connect(self.compute_clusters)
        p.selection_requested.connect(self.compute_selection)
        p.gene_activated.connect(window.colour_by_gene)
        p.group_activated.connect(self._rename)
        window.dataset_loaded.connect(self._dataset_loaded)
        window.dataset_closing.connect(lambda: window.runner.cancel(DE_SLOT))
        clusters = getattr(window, "clusters", None)
        if clusters is not None:
            clusters.changed.connect(self._names_changed)

    def show(self) -> None:
        self.dock.show()
        self.dock.raise_()

    def _groupings(self, ds: Dataset) -> list[str]:
        cats = ds.categorical_obs(MAX_GROUPS)
        return [c for c, n in cats.items() if 2 <= n <= MAX_GROUPS and c != NAMES_COLUMN]

    def _dataset_loaded(self) -> None:
        ds = self.window.dataset
        self.table, self.groupby = None, None
        self.panel.show_markers(pd.DataFrame(columns=["group", "gene"]))
        self.panel.dot_plot.clear()
        if ds is None:
            return
        columns = self._groupings(ds)
        current = CLUSTER_KEY if CLUSTER_KEY in columns else (columns[0] if columns else None)
        self.panel.set_groupings(columns, current)
        if CLUSTER_KEY in columns:
            self.compute_clusters(CLUSTER_KEY)
        else:
            self.panel.status.setText(
                "Choose groups and press 'Markers of clusters', or select cells and press "
                "'Markers of selection'."
            )

    def _labels(self, groupby: str | None) -> dict[str, str]:
        clusters = getattr(self.window, "clusters", None)
        if clusters is None or groupby != clusters.source:
            return {}
        return dict(clusters.names)

    def compute_clusters(self, groupby: str) -> bool:
        """Markers of every group of ``groupby`` vs the rest, and their dot plot (background)."""
        w = self.window
        ds = w.dataset
        if ds is None or not groupby or groupby not in ds.obs.columns:
            return False
        self.panel.status.setText(f"Finding the marker genes of each '{groupby}' group…")
        self._start(ds, cluster_markers, groupby, lambda r: self._clusters_done(groupby, r))
        return True

    def _start(
        self, ds: Dataset, work: Callable[..., Any], arg: object, done: Callable[[Any], None]
    ) -> None:
        """Run ``work(ds, arg)`` as the markers job; ``done(result)`` unless another dataset is
        open by then."""
        w = self.window
        w.runner.start(
            DE_SLOT,
            work,
            ds,
            arg,
            on_success=lambda result: done(result) if w.dataset is ds else None,
            on_failure=lambda exc: w.report_error(exc, "Marker genes failed"),
        )

    def _clusters_done(self, groupby: str, result: tuple) -> None:
        table, fraction, mean = result
        self.table, self.groupby = table, groupby
        labels = self._labels(groupby)
        self.panel.show_markers(table, labels)
        self.panel.dot_plot.show_table(fraction, mean, labels)
        self.panel.status.setText(
            f"Markers of {table['group'].nunique()} '{groupby}' groups, each against the rest "
            "(Wilcoxon, BH-adjusted p). Double-click a gene to colour the map, a group to "
            "rename it."
        )
        self.panel.tabs.setCurrentWidget(self.panel.dot_plot)

    def compute_selection(self) -> bool:
        """Markers of the current selection vs the other cells (background)."""
        w = self.window
        ds = w.dataset
        rows = np.asarray(w.selection.current, dtype=np.int64)
        if ds is None or not len(rows) or len(rows) >= ds.n_cells:
            self.panel.status.setText("Select some cells (not all) first, then compare them")
            return False
        self.panel.status.setText(f"Finding the marker genes of {len(rows):,} selected cells…")
        self._start(ds, selection_markers, rows, lambda t: self._selection_done(ds, len(rows), t))
        return True

    def _selection_done(self, ds: Dataset, n: int, table: pd.DataFrame) -> None:
        self.table, self.groupby = table, None
        self.panel.show_markers(table)
        self.panel.tabs.setCurrentIndex(1)
        self.panel.status.setText(
            f"Markers of the {n:,} selected cells against the other {ds.n_cells - n:,}."
        )

    def _rename(self, group: str) -> None:
        clusters = getattr(self.window, "clusters", None)
        if clusters is not None and self.groupby is not None:
            clusters.ask_rename(group, self.groupby)

    def _names_changed(self) -> None:
        labels = self._labels(self.groupby)
        if self.table is not None and self.groupby is not None:
            self.panel.set_labels(labels)
            self.panel.dot_plot.set_labels(labels)
