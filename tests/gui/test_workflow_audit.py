"""Window-level wiring across workflows: GUI jobs in the audit log, a model on a server as the
window's engine, and the Help/Model menu entries that reach them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtCore import QSettings

from c2s_desktop.core import audit
from c2s_desktop.core.engine.remote import ServerOptions
from c2s_desktop.core.model_store import demo_model_path
from c2s_desktop.core.tasks.annotate import MODE_PER_CELL
from c2s_desktop.gui.panels.annotate import CANDIDATES_OBS
from tests.conftest import sha256

T = 60_000


def _annotate(qtbot, w, rows):
    w.set_selection(rows)
    qtbot.waitUntil(lambda: not w.runner.is_busy(), timeout=T)
    panel = w.annotate_panel
    panel.mode_box.setCurrentText(MODE_PER_CELL)
    panel.candidates_box.setCurrentText(CANDIDATES_OBS)
    panel.candidates_obs.setCurrentText("cell_type")
    w.annotate.run()
    qtbot.waitUntil(lambda: not w.runner.is_busy(), timeout=T)
    assert w.last_error is None


def test_a_gui_annotation_is_one_audit_entry_without_cell_data(qtbot, with_model, audit_log):
    w = with_model
    qtbot.waitUntil(lambda: w.engine_host.sha256 is not None, timeout=T)
    rows = np.arange(5, 11)
    _annotate(qtbot, w, rows)
    entries = [e for e in audit.read_entries(path=audit_log) if e["task"] == "annotate"]
    assert len(entries) == 1
    entry = entries[0]
    assert entry["status"] == "ok"
    assert entry["inputs"][0]["sha256"] == sha256(w.dataset.path)
    assert entry["model"]["sha256"] == sha256(demo_model_path())
    assert entry["params"]["mode"] == MODE_PER_CELL and "rows" not in entry["params"]
    text = json.dumps(entry)
    for cell_id in w.dataset.cell_ids[rows]:
        assert str(cell_id) not in text
    # the annotation remembers the model that made it, for the export's provenance
    assert w.result_models["annotate"]["path"] == str(demo_model_path())


def test_connecting_to_a_server_that_is_down_says_so(qtbot, window, monkeypatch):
    from tests.engine.llama_server import free_port

    shown = []
    monkeypatch.setattr(
        "c2s_desktop.gui.dialogs.show_error", lambda parent, title, exc: shown.append(exc)
    )
    url = f"http://127.0.0.1:{free_port()}"
    host = window.engine_host
    assert host.connect_server(ServerOptions(url=url, retries=0, connect_timeout_s=2))
    assert "connecting to" in host.state_text()
    qtbot.waitUntil(lambda: not window.runner.is_busy(), timeout=T)
    assert not host.is_loaded() and host.state_text() == "Model: no model"
    assert shown and "127.0.0.1" in str(shown[0])


def test_help_and_model_menus_reach_audit_log_and_server(window):
    texts = {a.text() for m in window.menus.values() for a in m.actions()}
    assert "&Audit log…" in texts and "Connect to a &server…" in texts


@pytest.mark.timeout(240)
def test_a_model_on_a_server_annotates_through_the_window(qtbot, loaded, audit_log, demo_server):
    w, url = loaded, demo_server
    assert w.engine_host.connect_server(ServerOptions(url=url, scoring="generate"))
    qtbot.waitUntil(lambda: not w.runner.is_busy(), timeout=T)
    assert w.engine_host.is_loaded() and w.engine_host.server_url == url
    assert url in w.engine_host.state_text()
    # not measured on this server yet: the estimate uses its connection test's rate
    assert w.annotate.seconds_per_cell() is None
    QSettings().setValue("server/seconds_per_cell", 0.25)
    _, seconds = w.annotate.estimate()
    assert seconds == pytest.approx(0.25 * w.annotate.scored_cells(w.annotate.options()))
    _annotate(qtbot, w, np.arange(3))
    assert len(w.results["annotate"].labels) == 3
    w.engine_host.unload()
    entry = [e for e in audit.read_entries(path=audit_log) if e["task"] == "annotate"][-1]
    assert entry["engine"] == url and entry["model"] is None
