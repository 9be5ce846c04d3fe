"""The window opens what a lab has: Cell Ranger .h5 files and matrix folders (menu, dialog,
drop), and files with repeated gene names (merged, listed in the data panel)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QFileDialog

from tests.conftest import write_h5ad
from tests.tenx import real_counts, write_h5_v3, write_mtx_folder

T = 30_000


def wait_loaded(qtbot, w) -> None:
    qtbot.waitUntil(lambda: w.dataset is not None and not w.runner.is_busy(), timeout=T)


def test_opens_a_cell_ranger_h5(qtbot, window, tmp_path):
    path = write_h5_v3(tmp_path / "filtered_feature_bc_matrix.h5", extra={"Antibody Capture": 3})
    window.open_file(path)
    wait_loaded(qtbot, window)
    ds = window.dataset
    assert (ds.n_cells, ds.n_genes, ds.format) == (700, 765, "10x-h5-v3")
    text = window.data_panel.summary.toPlainText()
    assert "700 cells × 765 genes" in text and "Cell Ranger .h5 (v3+)" in text
    assert "left out 3 Antibody Capture features" in text
    assert not window.data_panel.problem.isVisible()
    assert "no embedding" in window.status.text()
    assert str(path) in window.recent_files()


def test_open_dialog_offers_h5_and_the_folder_action_opens_a_matrix_folder(
    qtbot, window, tmp_path, monkeypatch
):
    seen = {}

    def fake_open(parent, title, start, filters):  # noqa: ANN001
        seen["filters"] = filters
        return "", ""

    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(fake_open))
    window.open_action.trigger()
    assert "*.h5ad *.h5" in seen["filters"]
    folder = write_mtx_folder(tmp_path / "filtered_feature_bc_matrix")
    monkeypatch.setattr(
        QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(folder))
    )
    assert "Cell Ranger" in window.open_folder_action.text()
    window.open_folder_action.trigger()
    wait_loaded(qtbot, window)
    assert window.dataset.format == "10x-mtx" and window.dataset.path == folder
    assert list(window.dataset.cell_ids) == list(real_counts().obs_names)


def test_dropping_a_matrix_folder_opens_it(qtbot, window, tmp_path):
    folder = write_mtx_folder(tmp_path / "dropped", gz=False)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(folder))])
    event = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(event)
    wait_loaded(qtbot, window)
    assert Path(window.dataset.path) == folder and window.dataset.n_genes == 765


def test_repeated_gene_names_are_merged_and_listed(qtbot, window, tmp_path):
    genes = ["CD3E", "MS4A1", "CD3E", "LYZ", "LYZ", "LYZ"] + [f"G{i}" for i in range(14)]
    rng = np.random.default_rng(0)
    X = sp.csr_matrix(rng.poisson(1.0, size=(30, len(genes))).astype(np.float32))
    window.open_file(write_h5ad(tmp_path / "dups.h5ad", X, genes))
    wait_loaded(qtbot, window)
    panel = window.data_panel
    assert not panel.problem.isVisible() and panel.merged.isVisible()
    assert panel.merged.text() == (
        "2 gene names repeated, merged: CD3E (2 columns), LYZ (3 columns)"
    )
    assert "CD3E (2 columns)\nLYZ (3 columns)" in panel.merged.toolTip()
    assert window.dataset.vocabulary.n_words == len(genes) - 3
    window.open_file(write_h5ad(tmp_path / "plain.h5ad", X, [f"G{i}" for i in range(20)]))
    qtbot.waitUntil(lambda: window.dataset.n_genes == 20 and not window.runner.is_busy(), timeout=T)
    assert not panel.merged.isVisible()
