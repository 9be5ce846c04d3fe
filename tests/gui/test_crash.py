"""The model process dies (SIGKILL): the user is told what happened, restarts the model, and
the dataset, selections and earlier results are still there."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from PySide6.QtWidgets import QMessageBox

from c2s_desktop.core.engine.base import EngineCrashed
from c2s_desktop.core.tasks.annotate import MODE_PER_CELL
from c2s_desktop.gui.panels.annotate import CANDIDATES_OBS, LABEL_COLUMN

T = 60_000


def idle(qtbot, w):
    qtbot.waitUntil(lambda: not w.runner.is_busy(), timeout=T)


def annotate_rows(qtbot, w, rows):
    w.set_selection(rows)
    idle(qtbot, w)
    panel = w.annotate_panel
    (panel.scope_selection if len(rows) else panel.scope_all).setChecked(True)
    panel.mode_box.setCurrentText(MODE_PER_CELL)
    panel.candidates_box.setCurrentText(CANDIDATES_OBS)
    panel.candidates_obs.setCurrentText("cell_type")
    w.annotate._remember_speed(0.01)
    panel.start_button.click()


def test_kill_before_a_job_then_restart(qtbot, with_model):
    w = with_model
    host = w.engine_host
    annotate_rows(qtbot, w, np.arange(6))
    idle(qtbot, w)
    before = w.results["annotate"]
    w.selection.save("kept")
    crashes: list[str] = []
    host.crashed.connect(crashes.append)
    pid = host.pid
    os.kill(pid, signal.SIGKILL)
    annotate_rows(qtbot, w, np.arange(6, 12))
    idle(qtbot, w)
    assert crashes and "killed by SIGKILL" in crashes[0]
    box = host.crash_box
    assert box is not None and box.isVisible()
    assert "killed by SIGKILL" in box.text() and "safe" in box.informativeText()
    assert w.model_picker.text().endswith("stopped (restart it)")
    assert not host.is_loaded()
    # nothing else is lost
    assert w.results["annotate"] is before and "kept" in w.selection.saved
    assert w.dataset.obs[LABEL_COLUMN].notna().sum() == 6
    assert w.annotate_panel.start_button.isEnabled()
    host.restart_button.click()
    qtbot.waitUntil(host.is_loaded, timeout=T)
    idle(qtbot, w)
    assert host.pid != pid and "● loaded" in w.model_picker.text()
    annotate_rows(qtbot, w, np.arange(6, 12))
    idle(qtbot, w)
    assert w.results["annotate"] is not before
    labelled = w.dataset.obs[LABEL_COLUMN].notna().to_numpy()
    assert np.array_equal(np.flatnonzero(labelled), np.arange(6, 12))  # the new result


def test_kill_during_annotation_shows_dialog(qtbot, with_model):
    w = with_model
    host = w.engine_host
    annotate_rows(qtbot, w, np.zeros(0, dtype=np.int64))  # every cell: long enough to kill
    qtbot.waitUntil(lambda: "cells scored" in w.annotate_panel.progress_label.text(), timeout=T)
    os.kill(host.pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: host.crash_box is not None, timeout=T)
    idle(qtbot, w)
    assert "killed by SIGKILL" in host.crash_message
    assert isinstance(host.crash_box, QMessageBox) and w.last_error is None  # not a generic error
    assert LABEL_COLUMN not in w.dataset.obs.columns
    try:
        host.engine()
    except EngineCrashed as exc:
        assert "not running" in exc.message
    else:
        raise AssertionError("a crashed engine was handed out")
    # a task started after the crash restarts the model first, then runs
    annotate_rows(qtbot, w, np.arange(4))
    qtbot.waitUntil(lambda: LABEL_COLUMN in w.dataset.obs.columns, timeout=T)
    idle(qtbot, w)
    assert host.is_loaded() and w.dataset.obs[LABEL_COLUMN].notna().sum() == 4


@pytest.mark.timing
def test_unload_during_a_job_cancels_it_without_blocking(qtbot, with_own_model):
    w = with_own_model
    annotate_rows(qtbot, w, np.zeros(0, dtype=np.int64))
    qtbot.waitUntil(lambda: "cells scored" in w.annotate_panel.progress_label.text(), timeout=T)
    pid = w.engine_host.pid
    t0 = time.perf_counter()
    w.engine_host.unload()
    assert time.perf_counter() - t0 < 0.1  # the window does not wait for the model call
    idle(qtbot, w)
    qtbot.waitUntil(lambda: not w.engine_host.is_loaded(), timeout=T)
    assert w.model_picker.text() == "Model: no model" and LABEL_COLUMN not in w.dataset.obs
    qtbot.waitUntil(lambda: not os.path.exists(f"/proc/{pid}") or _zombie(pid), timeout=T)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.startswith("State:") and "Z" in line for line in f)
    except OSError:
        return True
