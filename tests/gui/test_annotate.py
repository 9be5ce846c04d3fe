"""Annotate and Embed through the window with the real demo model: estimate first, progress,
cancel, results in obs / view / table, low-confidence filter, responsiveness."""

from __future__ import annotations

import time

import numpy as np
from PySide6.QtCore import QTimer

from c2s_desktop.core.results import EMBEDDING as C2S_EMBEDDING
from c2s_desktop.core.tasks.annotate import MODE_PER_CELL, MODE_REPRESENTATIVE, AnnotateResult
from c2s_desktop.core.tasks.embed import EmbedResult
from c2s_desktop.gui.panels.annotate import (
    CANDIDATES_OBS,
    CANDIDATES_TYPED,
    LABEL_COLUMN,
    PROB_COLUMN,
)

T = 60_000


def idle(qtbot, w):
    qtbot.waitUntil(lambda: not w.runner.is_busy(), timeout=T)


def choose(w, mode, candidates_from="cell_type"):
    panel = w.annotate_panel
    panel.mode_box.setCurrentText(mode)
    panel.candidates_box.setCurrentText(CANDIDATES_OBS)
    panel.candidates_obs.setCurrentText(candidates_from)
    return panel


def test_annotate_selection_per_cell_end_to_end(qtbot, with_model):
    w = with_model
    ds = w.dataset
    rows = np.flatnonzero(ds.obs["cell_type"].astype(str).to_numpy() == "CD14+ Monocyte")[:12]
    w.set_selection(rows)
    idle(qtbot, w)
    panel = choose(w, MODE_PER_CELL)
    assert "measured on the first cell" in panel.estimate.text()  # no figure for this model yet
    candidates = set(panel.candidates())
    assert len(candidates) == 10
    w.annotate_action.trigger()  # Tasks ▸ Annotate shows the dock
    panel.start_button.click()
    # measured on the first cell, then annotated: the runner is idle for a moment in between
    qtbot.waitUntil(lambda: "annotate" in w.results, timeout=T)
    idle(qtbot, w)
    assert w.last_error is None
    result = w.results["annotate"]
    assert isinstance(result, AnnotateResult) and np.array_equal(result.rows, rows)
    assert set(result.labels) <= candidates
    assert np.mean(result.labels == "CD14+ Monocyte") >= 0.6  # the demo model knows monocytes
    labels = ds.obs[LABEL_COLUMN]
    assert labels.notna().sum() == len(rows) and labels.iloc[rows].notna().all()
    probs = ds.obs[PROB_COLUMN].to_numpy()
    assert np.isnan(probs).sum() == ds.n_cells - len(rows) and np.all(probs[rows] > 0)
    assert w.view.colour_column == LABEL_COLUMN and w.view.colour_box.findText(LABEL_COLUMN) >= 0
    table = panel.table
    counts = {
        table.item(r, 0).text(): int(table.item(r, 2).text()) for r in range(table.rowCount())
    }
    assert sum(counts.values()) == len(rows) and counts == result.counts()
    assert "s per scored cell" in panel.summary.text()
    # the measured speed is remembered: the estimate is now a time
    assert "Estimate: " in panel.estimate.text() and "≈" in panel.estimate.text()
    # low-confidence filter selects exactly the cells below the threshold
    panel.threshold.setValue(float(np.median(result.probability)))
    panel.low_button.click()
    expected = rows[result.probability < panel.threshold.value()]
    assert np.array_equal(np.sort(w.selection.current), np.sort(expected))
    # double-click on a label row selects that label's cells
    w.annotate.select_label(table.item(0, 0).text())
    assert len(w.selection.current) == int(table.item(0, 2).text())


def test_long_run_shows_estimate_and_asks_first(qtbot, with_model):
    w = with_model
    panel = choose(w, MODE_PER_CELL)
    panel.scope_all.setChecked(True)
    w.annotate._remember_speed(1.5)  # a slow model: 700 cells ≈ 18 min
    w.annotate.update_estimate()
    assert "700 cells × 1.5 s ≈ 18 min" in panel.estimate.text()
    panel.start_button.click()
    box = w.annotate.confirm_box
    assert box is not None and box.isVisible() and "≈ 18 min" in box.text()
    box.reject()
    assert not w.runner.is_busy("model") and LABEL_COLUMN not in w.dataset.obs.columns


def test_cancel_during_annotation_keeps_window_responsive(qtbot, with_model):
    w = with_model
    panel = choose(w, MODE_PER_CELL)
    panel.scope_all.setChecked(True)
    w.annotate._remember_speed(0.01)  # no question asked
    ticks: list[float] = []
    timer = QTimer(interval=20)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    panel.start_button.click()
    qtbot.waitUntil(lambda: "cells scored" in panel.progress_label.text(), timeout=T)
    qtbot.waitUntil(lambda: int(panel.progress_label.text().split("/")[0]) >= 4, timeout=T)
    text = panel.progress_label.text()
    assert "cells/s" in text and "left" in text
    assert "cells/s" in w.job_label.text()  # the jobs strip shows rate and time left too
    panel.cancel_button.click()
    idle(qtbot, w)
    timer.stop()
    gaps = np.diff(ticks) * 1000
    assert len(gaps) > 10 and gaps.max() < 100, f"GUI thread blocked {gaps.max():.0f} ms"
    assert LABEL_COLUMN not in w.dataset.obs.columns and "annotate" not in w.results
    assert panel.start_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert w.last_error is None
    # the same settings continue where the cancelled run stopped
    assert panel.start_button.text() == "Resume"
    messages: list[str] = []
    original = panel.show_progress
    panel.show_progress = lambda f, m: (messages.append(m), original(f, m))  # type: ignore[method-assign]
    panel.start_button.click()
    qtbot.waitUntil(lambda: any(m.startswith("resuming: ") for m in messages), timeout=T)
    w.annotate.cancel()
    idle(qtbot, w)


def test_representative_with_clusters_and_typed_candidates(qtbot, with_model):
    w = with_model
    panel = w.annotate_panel
    panel.scope_all.setChecked(True)
    panel.mode_box.setCurrentText(MODE_REPRESENTATIVE)
    panel.cluster_box.setCurrentText("louvain")
    panel.k_spin.setValue(1)
    w.annotate._remember_speed(0.01)
    panel.candidates_box.setCurrentText(CANDIDATES_TYPED)
    panel.candidates_edit.setPlainText("CD14+ Monocyte\nCD19+ B\nCD56+ NK")
    n_clusters = w.dataset.obs["louvain"].nunique()
    assert f"700 cells, {n_clusters} scored" in panel.estimate.text()
    panel.start_button.click()
    qtbot.waitUntil(lambda: "annotate" in w.results, timeout=T)
    idle(qtbot, w)
    result = w.results["annotate"]
    assert result.mode == MODE_REPRESENTATIVE and len(result.scored_rows) == n_clusters
    assert set(result.labels) <= {"CD14+ Monocyte", "CD19+ B", "CD56+ NK"}
    assert w.dataset.obs[LABEL_COLUMN].notna().all()
    assert "(exact log-likelihood)" in w.status.text()  # which scoring the labels came from
    assert "representative cells scored" in panel.summary.text()


def test_embed_selection_adds_c2s_embedding(qtbot, with_model):
    w = with_model
    rows = np.arange(0, 700, 60)
    w.set_selection(rows)
    idle(qtbot, w)
    w.embed_action.trigger()
    idle(qtbot, w)
    assert w.last_error is None
    result = w.results["embed"]
    assert isinstance(result, EmbedResult) and np.array_equal(result.rows, rows)
    assert result.embedding.shape == (len(rows), w.engine_host.info.n_embd)
    xy = w.embeddings[C2S_EMBEDDING]
    assert xy.shape == (700, 2) and np.isfinite(xy[rows]).all()
    assert np.isnan(np.delete(xy, rows, axis=0)).all()
    assert w.view.embedding_box.currentText() == C2S_EMBEDDING
    w.view.render_now()
    assert w.view.image_pixels() > 0


def test_without_a_model_the_manager_opens(qtbot, loaded):
    loaded.annotate_panel.start_button.click()
    assert "No model loaded" in loaded.status.text()
    assert loaded.model_manager is not None and loaded.model_manager.isVisible()
    idle(qtbot, loaded)


def test_remembered_model_is_loaded_when_a_task_needs_it(qtbot, with_model):
    w = with_model
    w.engine_host.unload()
    assert not w.engine_host.is_loaded() and w.engine_host.remembered_path() is not None
    w.set_selection(np.arange(3))
    idle(qtbot, w)
    choose(w, MODE_PER_CELL)
    w.annotate_panel.start_button.click()
    assert w.engine_host.loading is not None  # loads first, then annotates
    qtbot.waitUntil(lambda: "annotate" in w.results, timeout=T)  # load, measure, annotate
    idle(qtbot, w)
    assert w.engine_host.is_loaded() and len(w.results["annotate"].rows) == 3
    assert w.annotate.seconds_per_cell() is not None
