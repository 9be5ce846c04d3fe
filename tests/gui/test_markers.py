"""Markers dock on a prepared file: dot plot, DE table, colour by gene, cluster renaming."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QInputDialog

from c2s_desktop.core.preprocess import CLUSTER_KEY, PreprocessOptions, preprocess_file
from c2s_desktop.gui.clusters import NAMES_COLUMN
from c2s_desktop.gui.panels.annotate import CANDIDATES_OBS
from c2s_desktop.gui.panels.markers import COLUMNS

T = 60_000


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The demo cells without embeddings, prepared once by the core (in this process)."""
    from c2s_desktop.gui.app import demo_data_path

    folder = tmp_path_factory.mktemp("prepared")
    adata = ad.read_h5ad(demo_data_path())
    adata.obsm.clear()
    adata.write_h5ad(folder / "pbmc_raw.h5ad")
    options = PreprocessOptions(n_top_genes=500)
    return preprocess_file(folder / "pbmc_raw.h5ad", folder / "pbmc_prepared.h5ad", options).output


def opened(qtbot, window, path):
    window.open_file(path)
    qtbot.waitUntil(lambda: window.dataset is not None, timeout=T)
    panel = window.marker_view.panel
    qtbot.waitUntil(lambda: panel.table.rowCount() > 0 and not window.runner.is_busy(), timeout=T)
    return window


def column(table, c):
    return [table.item(r, c).text() for r in range(table.rowCount())]


def test_cluster_markers_dot_plot_and_gene_colouring(qtbot, window, prepared):
    opened(qtbot, window, prepared)
    panel = window.marker_view.panel
    clusters = sorted(window.dataset.obs[CLUSTER_KEY].astype(str).unique(), key=int)
    assert panel.groupby_box.currentText() == CLUSTER_KEY
    assert sorted(set(column(panel.table, 0)), key=int) == clusters
    assert [panel.table.horizontalHeaderItem(c).text() for c in range(7)] == list(COLUMNS)
    dot = panel.dot_plot
    assert dot.groups == clusters and len(dot.genes) >= len(clusters)
    assert set(dot.genes) <= set(column(panel.table, 1))
    assert {"CD79A", "MS4A1", "NKG7", "LYZ"} & set(dot.genes)  # real PBMC markers
    # sortable by value (adjusted p), not by text
    panel.table.sortItems(4, Qt.SortOrder.AscendingOrder)
    values = [float(t) for t in column(panel.table, 4)]
    assert values == sorted(values)
    item = panel.table.item(0, 1)
    panel.table.itemDoubleClicked.emit(item)
    qtbot.waitUntil(lambda: window.view.gene == item.text(), timeout=T)
    assert window.view.side.currentWidget() is window.view.colour_bar
    assert window.annotate_panel.cluster_box.currentText() == CLUSTER_KEY


def test_markers_of_selection(qtbot, window, prepared):
    opened(qtbot, window, prepared)
    obs = window.dataset.obs
    rows = np.flatnonzero(obs[CLUSTER_KEY].astype(str).to_numpy() == "0")
    window.set_selection(rows)
    panel = window.marker_view.panel
    panel.selection_button.click()
    qtbot.waitUntil(lambda: "selected cells" in panel.status.text(), timeout=T)
    qtbot.waitUntil(lambda: not window.runner.is_busy(), timeout=T)
    assert set(column(panel.table, 0)) == {"selection"} and panel.table.rowCount() > 0
    assert f"{len(rows):,} selected cells" in panel.status.text()


def test_renamed_clusters_are_a_category_and_candidate_source(qtbot, make_window, prepared):
    window = opened(qtbot, make_window(), prepared)
    panel = window.marker_view.panel
    row = column(panel.table, 0).index("3")
    panel.table.itemDoubleClicked.emit(panel.table.item(row, 0))
    dialog = window.clusters.dialog
    assert isinstance(dialog, QInputDialog) and dialog.isVisible()
    dialog.setTextValue("CD14 monocytes")
    dialog.accept()
    obs = window.dataset.obs
    three = obs[CLUSTER_KEY].astype(str) == "3"
    assert (obs.loc[three, NAMES_COLUMN] == "CD14 monocytes").all()
    assert (obs.loc[~three, NAMES_COLUMN].astype(str) == obs.loc[~three, CLUSTER_KEY]).all()
    assert window.view.colour_column == NAMES_COLUMN
    legend = [window.view.legend.item(i).text() for i in range(window.view.legend.count())]
    assert any(t.startswith("CD14 monocytes ") for t in legend)
    assert "CD14 monocytes" in column(panel.table, 0)
    assert panel.dot_plot.group_labels[panel.dot_plot.groups.index("3")] == "CD14 monocytes"
    annotate = window.annotate_panel
    annotate.candidates_box.setCurrentText(CANDIDATES_OBS)
    annotate.candidates_obs.setCurrentText(NAMES_COLUMN)
    assert "CD14 monocytes" in annotate.candidates()
    assert window.session.save_now() is not None  # autosaved with the dataset's session

    again = opened(qtbot, make_window(), prepared)  # reopening restores the names
    assert again.clusters.names == {"3": "CD14 monocytes"}
    assert NAMES_COLUMN in again.dataset.obs.columns
    assert again.view.colour_box.findText(NAMES_COLUMN) >= 0
    assert "CD14 monocytes" in column(again.marker_view.panel.table, 0)
