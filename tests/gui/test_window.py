"""The main window driven through its real widgets: open, explore, select, save, export."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from c2s_desktop.core.embedding import PCA_KEY
from c2s_desktop.core.selection import session_file
from c2s_desktop.gui.plot import TOOL_LASSO
from tests.conftest import write_h5ad

T = 30_000


def idle(qtbot, w):
    qtbot.waitUntil(lambda: not w.runner.is_busy(), timeout=T)


def test_opens_real_dataset_in_background(loaded, real_h5ad):
    text = loaded.data_panel.summary.toPlainText()
    assert "700 cells × 765 genes" in text and "X_umap" in text
    assert str(real_h5ad) in loaded.recent_files()
    assert loaded.recent_menu.actions()[0].text() == str(real_h5ad)
    view = loaded.view
    assert view.embedding_box.currentText() == "X_umap"  # UMAP preferred over PCA
    assert view.image_pixels() > 0 and view.colour_column == "cell_type"
    assert view.legend.item(0).text().endswith(" 68")  # legend shows counts
    assert loaded.data_panel.source_box.currentText() == "X"


def test_bad_file_shows_dialog_with_message(qtbot, window, tmp_path):
    bad = tmp_path / "bad.h5ad"
    bad.write_text("not hdf5")
    window.open_file(bad)
    qtbot.waitUntil(lambda: window.findChild(QMessageBox) is not None, timeout=T)
    box = window.findChild(QMessageBox)
    assert "not an HDF5" in box.text() and "convert" in box.informativeText()
    assert window.dataset is None
    assert "cannot be used as it is" in window.data_panel.problem.text()


def test_unexpected_error_is_logged_not_shown(qtbot, window, isolated):
    from c2s_desktop.gui.dialogs import show_error

    box = show_error(window, "Oops", RuntimeError("kaboom"))
    log = isolated / "logs" / "c2s-desktop.log"
    assert "kaboom" in box.text() and str(log) in box.informativeText()
    assert "Traceback" in log.read_text() or "RuntimeError" in log.read_text()


def test_cancelled_open_is_discarded(qtbot, window, real_h5ad):
    window.open_file(real_h5ad)
    window.cancel_button.click()
    idle(qtbot, window)
    assert window.dataset is None and window.status.text() == "Cancelled"


def test_legend_hides_and_selects_categories(qtbot, loaded):
    view, panel = loaded.view, loaded.selection_panel
    before = view.image_pixels()
    view.set_category_visible("Dendritic", False)
    view.render_now()
    assert "Dendritic" in view.hidden and view.image_pixels() < before
    item = next(
        view.legend.item(i)
        for i in range(view.legend.count())
        if view.legend.item(i).data(Qt.ItemDataRole.UserRole) == "CD19+ B"
    )
    view.legend.itemDoubleClicked.emit(item)
    idle(qtbot, loaded)
    assert len(loaded.selection.current) == 95 and panel.count_label.text() == "95 cells selected"
    assert panel.composition.item(0, 0).text() == "CD19+ B"
    assert panel.composition.item(0, 2).text() == "100.0"
    markers = [panel.markers.item(r, 0).text() for r in range(panel.markers.rowCount())]
    assert {"CD79A", "MS4A1"} & set(markers)
    assert panel.sentences_text().count("\n\n") == 4  # 5 cells
    first_id = loaded.dataset.cell_ids[loaded.selection.current[0]]
    assert panel.sentences_text().startswith(f"{first_id}: ")
    panel.copy_button.click()
    assert QApplication.clipboard().text() == panel.sentences_text()


def _drag(widget, points, modifiers=Qt.KeyboardModifier.NoModifier):
    """Press at the first point, move through the others, release at the last."""
    left = Qt.MouseButton.LeftButton

    def send(kind, p, buttons):
        pos = QPointF(p)
        ev = QMouseEvent(kind, pos, widget.mapToGlobal(pos), left, buttons, modifiers)
        QApplication.sendEvent(widget, ev)

    send(QEvent.Type.MouseButtonPress, points[0], left)
    for p in points[1:]:
        send(QEvent.Type.MouseMove, p, left)
    send(QEvent.Type.MouseButtonRelease, points[-1], Qt.MouseButton.NoButton)


def test_lasso_drag_selects_cells_inside(qtbot, loaded, monkeypatch):
    import pyqtgraph as pg

    monkeypatch.setitem(pg.CONFIG_OPTIONS, "mouseRateLimit", 0)  # synthetic moves come fast
    view = loaded.view
    view.set_tool(TOOL_LASSO)
    port = view.plot.viewport()
    w, h = port.width(), port.height()
    square = [
        QPoint(int(w * a), int(h * b))
        for a, b in [(0.05, 0.05), (0.95, 0.05), (0.95, 0.95), (0.05, 0.95), (0.05, 0.06)]
    ]
    steps = [square[0] + (square[1] - square[0]) * t / 10 for t in range(10)] + square[1:]
    _drag(port, steps)
    idle(qtbot, loaded)
    n = len(loaded.selection.current)
    assert 0.5 * 700 < n <= 700
    # Ctrl+drag along the same path subtracts those cells again
    _drag(port, steps, Qt.KeyboardModifier.ControlModifier)
    assert len(loaded.selection.current) == 0
    idle(qtbot, loaded)


def test_selection_modes_add_and_subtract(qtbot, loaded):
    view = loaded.view
    xy = view.xy
    mid = float(np.median(xy[:, 0]))
    lo, hi = xy.min(axis=0) - 1, xy.max(axis=0) + 1
    view.select_rect((lo[0], lo[1]), (mid, hi[1]))
    left = len(loaded.selection.current)
    view.select_rect((mid, lo[1]), (hi[0], hi[1]), "add")
    assert len(loaded.selection.current) == 700
    view.select_rect((lo[0], lo[1]), (mid, hi[1]), "subtract")
    assert len(loaded.selection.current) == 700 - left
    idle(qtbot, loaded)


def test_gene_search_colours_by_expression(qtbot, loaded):
    view = loaded.view
    assert "CD79A" in view.gene_model.stringList()
    view.gene_edit.setText("cd79a")
    qtbot.keyClick(view.gene_edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: view.gene is not None, timeout=T)
    assert view.gene == "cd79a" and view.side.currentWidget() is view.colour_bar
    assert view.colour_bar.high > 0
    view.gene_edit.setText("NOT_A_GENE")
    qtbot.keyClick(view.gene_edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: loaded.last_error is not None, timeout=T)
    assert "no gene 'NOT_A_GENE'" in loaded.last_error.text()


def test_hover_shows_cell_id_and_obs(qtbot, loaded):
    view = loaded.view
    row = 17
    x, y = view.xy[row]
    hit = view.cell_at(float(x), float(y))
    assert hit is not None
    text = view.describe_cell(hit)
    assert loaded.dataset.cell_ids[hit] in text and "cell_type: " in text
    scene = view.box.mapViewToScene(QPointF(float(x), float(y)))
    view.plot.scene().sigMouseMoved.emit(scene)
    assert view.hover_label.text() == text


def test_named_selections_persist_and_export(qtbot, make_window, real_h5ad, tmp_path):
    w = make_window()
    w.open_file(real_h5ad)
    qtbot.waitUntil(lambda: w.dataset is not None, timeout=T)
    w.view.select_categories(["CD14+ Monocyte"])
    panel = w.selection_panel
    panel.name_edit.setText("monocytes")
    qtbot.keyClick(panel.name_edit, Qt.Key.Key_Return)
    assert panel.saved.item(0).text() == "monocytes"
    assert session_file(real_h5ad).exists()
    out = w.export_selection(tmp_path / "mono.csv")
    lines = out.read_text().splitlines()
    assert lines[0] == "cell_id,cell_type,louvain" and len(lines) == 130
    assert all(",CD14+ Monocyte," in line for line in lines[1:])
    idle(qtbot, w)

    again = make_window()  # a new window restores the saved selection
    again.open_file(real_h5ad)
    qtbot.waitUntil(lambda: again.dataset is not None, timeout=T)
    assert again.selection_panel.saved.item(0).text() == "monocytes"
    again.selection_panel.saved.itemDoubleClicked.emit(again.selection_panel.saved.item(0))
    assert len(again.selection.current) == 129
    idle(qtbot, again)


def test_compute_pca_when_file_has_no_embedding(qtbot, window, tmp_path):
    rng = np.random.default_rng(0)
    counts = sp.csr_matrix(rng.poisson(1.0, size=(60, 30)).astype(np.float32))
    path = write_h5ad(tmp_path / "noemb.h5ad", counts)
    window.open_file(path)
    qtbot.waitUntil(lambda: window.dataset is not None, timeout=T)
    view = window.view
    assert not view.pca_button.isHidden()  # and the offer to prepare it (counts, no map)
    qtbot.waitUntil(lambda: "Prepare this dataset" in window.status.text(), timeout=T)
    view.pca_button.click()
    qtbot.waitUntil(lambda: PCA_KEY in window.embeddings, timeout=T)
    assert view.embedding_box.currentText() == PCA_KEY and view.image_pixels() > 0
    assert view.pca_button.isHidden()


def test_data_panel_choices_reselect(qtbot, loaded):
    panel = loaded.data_panel
    panel.organism_box.setCurrentText("Mus musculus")
    panel.apply_button.click()
    qtbot.waitUntil(lambda: "Mus musculus (user)" in panel.summary.toPlainText(), timeout=T)
    assert loaded.dataset.organism == "Mus musculus"


def test_keyboard_shortcuts(qtbot, loaded):
    keys = {a.shortcut().toString(): a for a in loaded.actions() if not a.shortcut().isEmpty()}
    assert {"Ctrl+O", "Ctrl+E", "Ctrl+S", "L", "R", "P", "Esc", "Ctrl+A"} <= set(keys)
    keys["L"].trigger()
    assert loaded.view.box.tool == TOOL_LASSO
    keys["Ctrl+A"].trigger()
    assert len(loaded.selection.current) == 700
    keys["Ctrl+S"].trigger()
    assert "selection 1" in loaded.selection.saved
    keys["Ctrl+Shift+A"].trigger()
    assert len(loaded.selection.current) == 0
    idle(qtbot, loaded)


def test_window_layout_is_remembered(qtbot, make_window):
    from PySide6.QtWidgets import QDockWidget

    w = make_window()
    w.findChild(QDockWidget, "dock_data").hide()
    w.close()
    assert w.settings.value("window/geometry") is not None
    again = make_window()
    assert again.findChild(QDockWidget, "dock_data").isHidden()
    assert again.findChild(QDockWidget, "dock_selection").isVisible()


@pytest.mark.parametrize("flag", ["--screenshot", "--self-test"])
def test_command_line_flags(tmp_path, real_h5ad, qtbot, isolated, flag, capsys):
    from c2s_desktop.gui.app import demo_data_path, main

    assert demo_data_path().exists()
    if flag == "--screenshot":
        shot = tmp_path / "shot.png"
        assert main([str(real_h5ad), "--screenshot", str(shot)]) == 0
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert main(["--self-test"]) == 0
        assert capsys.readouterr().out.startswith("self-test passed")
