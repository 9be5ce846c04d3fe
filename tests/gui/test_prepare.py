"""Prepare this dataset: the offer, the QC view's thresholds, the run, cancel and errors."""

from __future__ import annotations

import time

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from c2s_desktop.core.preprocess import CLUSTER_KEY, passing_cells
from c2s_desktop.gui.panels.prepare import PREPARE_SLOT, prepared_dir
from tests.conftest import sha256, write_h5ad

T = 60_000


@pytest.fixture(scope="module")
def raw_file(tmp_path_factory):
    """The 700-cell demo file without its embeddings: raw counts and labels only."""
    from c2s_desktop.gui.app import demo_data_path

    adata = ad.read_h5ad(demo_data_path())
    adata.obsm.clear()
    path = tmp_path_factory.mktemp("raw") / "pbmc_raw.h5ad"
    adata.write_h5ad(path)
    return path


def leftovers() -> list:
    """Every file in the prepared folder (hidden partial files included)."""
    return list(prepared_dir().iterdir()) if prepared_dir().exists() else []


def opened(qtbot, window, path):
    window.open_file(path)
    qtbot.waitUntil(lambda: window.dataset is not None and not window.runner.is_busy(), timeout=T)
    return window


def dialog_with_qc(qtbot, window):
    dialog = window.preparer.open_dialog()
    qtbot.waitUntil(lambda: dialog.qc is not None, timeout=T)
    return dialog


def test_raw_file_offers_prepare_at_once(qtbot, window, raw_file):
    opened(qtbot, window, raw_file)
    banner = window.preparer.banner
    qtbot.waitUntil(lambda: "Prepare this dataset" in window.status.text(), timeout=T)
    assert banner.isVisible() and banner.prepare_button.isVisible()
    assert not banner.open_button.isVisible()  # nothing prepared yet
    action = window.preparer.action
    assert action.isEnabled() and action in window.menus["data"].actions()
    assert action.shortcut().toString() == "Ctrl+Shift+P"


def test_thresholds_update_remaining_cells(qtbot, window, raw_file):
    opened(qtbot, window, raw_file)
    dialog = dialog_with_qc(qtbot, window)
    qc = dialog.qc
    assert len(qc.n_genes_by_counts) == 700 and dialog.remain.text() == "700 of 700 cells remain"
    dialog.min_genes.setValue(250)
    kept = int(passing_cells(qc, dialog.options()).sum())
    assert 0 < kept < 700 and dialog.remain.text() == f"{kept:,} of 700 cells remain"
    assert dialog.genes_plot.lines["min_genes"].value() == 250
    line = dialog.genes_plot.lines["max_genes"]  # dragging a line sets its spin box
    line.setValue(300)
    assert dialog.max_genes.value() == 300 and dialog.options().max_genes == 300
    kept = int(passing_cells(qc, dialog.options()).sum())
    assert dialog.remain.text() == f"{kept:,} of 700 cells remain"
    dialog.max_pct_mt.setValue(-1)  # "none"
    assert dialog.options().max_pct_mt is None


def test_run_opens_prepared_map_and_offers_it_later(qtbot, make_window, raw_file, isolated):
    before = sha256(raw_file)
    window = opened(qtbot, make_window(), raw_file)
    dialog = dialog_with_qc(qtbot, window)
    dialog.n_top_genes.setValue(500)
    dialog.run_button.click()
    qtbot.waitUntil(lambda: "prepared from" in window.windowTitle(), timeout=180_000)
    qtbot.waitUntil(lambda: not window.runner.is_busy(), timeout=T)
    out = window.preparer.summary.output
    assert out.parent == prepared_dir() and prepared_dir().is_relative_to(isolated)
    assert out.name.startswith("pbmc_raw-") and window.dataset.path == out
    assert window.windowTitle().startswith(f"{out.name} (prepared from pbmc_raw.h5ad)")
    assert "Prepared from pbmc_raw.h5ad" in window.data_panel.summary.toPlainText()
    view = window.view
    assert view.embedding_box.currentText() == "X_umap" and view.image_pixels() > 0
    assert view.colour_column == CLUSTER_KEY and view.legend.count() >= 2
    assert sha256(raw_file) == before  # the input is never modified
    assert window.preparer.saved_options().n_top_genes == 500  # remembered

    again = opened(qtbot, make_window(), raw_file)  # a later session: the offer is there
    banner = again.preparer.banner
    assert banner.isVisible() and banner.open_button.isVisible()
    assert again.preparer.open_dialog().n_top_genes.value() == 500
    again.preparer.dialog.close()
    banner.open_button.click()
    qtbot.waitUntil(lambda: again.dataset is not None and again.dataset.path == out, timeout=T)
    qtbot.waitUntil(lambda: not again.runner.is_busy(), timeout=T)
    assert "prepared from pbmc_raw.h5ad" in again.windowTitle()


def test_cancel_stops_the_run_and_writes_nothing(qtbot, window, raw_file):
    opened(qtbot, window, raw_file)
    dialog = dialog_with_qc(qtbot, window)
    messages = []
    window.runner.progress.connect(lambda f, m: messages.append(m))
    assert window.preparer.run()
    qtbot.waitUntil(lambda: len(messages) >= 2, timeout=T)  # the child is running
    t0 = time.perf_counter()
    qtbot.keyClick(dialog, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not window.runner.is_busy(PREPARE_SLOT), timeout=5_000)
    took = time.perf_counter() - t0
    assert took < 3.0, f"cancel took {took:.1f} s"  # the child is killed, not awaited
    assert window.status.text() == "Cancelled" and dialog.isVisible()
    assert leftovers() == []
    assert window.dataset.path == raw_file and window.preparer.summary is None
    assert dialog.run_button.isEnabled()


def test_thresholds_removing_every_cell_show_error(qtbot, window, raw_file):
    opened(qtbot, window, raw_file)
    dialog = dialog_with_qc(qtbot, window)
    dialog.min_genes.setValue(5000)
    assert dialog.remain.text() == "0 of 700 cells remain"
    dialog.run_button.click()
    box = window.last_error
    assert isinstance(box, QMessageBox) and "remove every cell" in box.text()
    assert not window.runner.is_busy(PREPARE_SLOT)
    assert leftovers() == []


def test_file_without_counts_cannot_be_prepared(qtbot, window, tmp_path):
    rng = np.random.default_rng(0)
    x = sp.csr_matrix(np.log1p(rng.poisson(1.0, (30, 12)).astype(np.float32) * 1.7))
    path = write_h5ad(tmp_path / "lognorm.h5ad", x)
    opened(qtbot, window, path)
    assert not window.preparer.action.isEnabled() and not window.preparer.banner.isVisible()
    window.preparer.open_dialog()
    qtbot.waitUntil(lambda: window.last_error is not None, timeout=T)
    assert "count" in window.last_error.text().lower()
    assert not window.preparer.dialog.run_button.isEnabled()
