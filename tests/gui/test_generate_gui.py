"""Generate dock with the demo model: cells of a type, comparison with real cells, save, cancel."""

from __future__ import annotations

import anndata as ad
import numpy as np
from PySide6.QtWidgets import QMessageBox

from ..conftest import sha256


def test_generate_compare_and_save(qtbot, with_model, tmp_path, monkeypatch):
    w = with_model
    g = w.generator
    g.show()
    p = g.panel
    assert p.column_box.currentText() == "cell_type"
    types = [p.type_box.itemText(i) for i in range(p.type_box.count())]
    assert "CD19+ B" in types
    p.type_box.setCurrentText("CD19+ B")
    p.n_cells.setValue(3)
    p.temperature.setValue(0.8)
    p.seed.setValue(7)
    progress: list[float] = []
    w.runner.progress.connect(lambda f, m: progress.append(f))
    p.generate_button.click()
    qtbot.waitUntil(lambda: g.result is not None, timeout=30_000)
    qtbot.waitUntil(lambda: not w.runner.is_busy("model"), timeout=10_000)
    result, comp = g.result, g.comparison
    assert len(result.sentences) == 3 and p.table.rowCount() == 3
    assert p.table.item(0, 3).text().split()[0] == result.sentences[0].split()[0]
    assert any(abs(f - 2 / 3) < 1e-6 for f in progress)  # per-cell progress
    assert comp.genes and comp.real is not None and comp.n_real > 10
    assert len(p.bars) == 2 and np.all(comp.generated > 0)
    # the comparison means something: B-cell genes are high in real B cells too
    assert np.corrcoef(comp.generated, comp.real)[0, 1] > 0
    assert g.sets[-1].cell_type == "CD19+ B" and g.sets[-1].sentences == result.sentences
    assert g.sets[-1].parameters["temperature"] == 0.8

    out = tmp_path / "gen.h5ad"
    before = sha256(w.dataset.path)
    assert g.save_to(out)
    qtbot.waitUntil(lambda: g.saved_path == out, timeout=10_000)
    back = ad.read_h5ad(out)
    assert back.n_obs == 3 and list(back.obs["c2s_sentence"]) == result.sentences
    assert back.uns["c2s"]["generate"]["input_sha256"] == before
    # overwrite only after confirmation; never the input
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    stamp = out.stat().st_mtime_ns
    assert not g.save_to(out) and out.stat().st_mtime_ns == stamp
    assert not g.save_to(w.dataset.path) and sha256(w.dataset.path) == before
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    g.saved_path = None
    assert g.save_to(out)
    qtbot.waitUntil(lambda: g.saved_path == out, timeout=10_000)


def test_generate_can_be_cancelled(qtbot, with_model):
    w = with_model
    g = w.generator
    g.panel.type_box.setCurrentText("CD56+ NK")
    g.panel.n_cells.setValue(500)
    g.generate()
    qtbot.waitUntil(lambda: w.runner.is_busy("model"), timeout=10_000)
    qtbot.wait(200)
    g.panel.cancel_button.click()
    qtbot.waitUntil(lambda: not w.runner.is_busy("model"), timeout=3_000)
    assert g.result is None and not g.sets
    assert g.panel.generate_button.isEnabled()
