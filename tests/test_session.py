"""The autosaved session: round trip, old and damaged files, autosave and restore in a window."""

from __future__ import annotations

import json

import numpy as np
import pytest

from c2s_desktop.core.errors import InputFileError
from c2s_desktop.core.selection import SelectionModel, load_selections, save_selections
from c2s_desktop.core.session import (
    KIND_QUESTION,
    KIND_SUMMARY,
    STATUS_STOPPED,
    Conversation,
    GeneratedSet,
    SessionState,
    Turn,
    arrays_file,
    export_conversation,
    load_session,
    rows_key,
    save_session,
    set_aside,
)
from c2s_desktop.core.tasks.annotate import AnnotateResult
from c2s_desktop.core.tasks.embed import EmbedResult

N = 50


def annotate_result(n: int = N) -> AnnotateResult:
    rows = np.arange(0, n, 2)
    return AnnotateResult(
        rows=rows,
        labels=np.where(rows % 4 == 0, "T cell", "B cell").astype(object),
        probability=np.linspace(0.2, 0.9, len(rows)).astype(np.float32),
        candidates=("T cell", "B cell"),
        mode="per-cell",
        scored_rows=rows,
        scored_probs=np.ones((len(rows), 2), np.float32) / 2,
        clusters=None,
        cluster_agreement={},
        template_id="c2s/cell_type_prediction/0",
        n_genes=200,
        seconds_per_scored_cell=0.01,
        warnings=("a warning",),
    )


def conversation(rows: np.ndarray) -> Conversation:
    return Conversation(
        rows_key(rows),
        "Selection of 3 cells",
        len(rows),
        [
            Turn(KIND_SUMMARY, "", "These are T cells.", prompt="P1", markers=["CD3D", "IL7R"]),
            Turn(KIND_QUESTION, "Which?", "partial", status=STATUS_STOPPED, prompt="P2"),
        ],
    )


def full_state() -> SessionState:
    rows = np.array([3, 1, 2])
    state = SessionState(N, "/data/x.h5ad")
    state.selections = {"a": np.array([1, 2]), "b": np.array([10, 40])}
    state.current = rows
    conv = conversation(rows)
    state.conversations = {conv.key: conv}
    state.generated = [GeneratedSet("B cell", ["CD79A MS4A1", "CD74"], {"temperature": 1.0})]
    state.annotate = annotate_result()
    emb = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    state.embed = EmbedResult(np.arange(5), emb, emb[:, :2], "c2s/embed", ())
    return state


def test_round_trip_keeps_everything(tmp_path):
    path = save_session(tmp_path / "s.json", full_state())
    assert arrays_file(path).exists()
    back = load_session(path, N)
    assert set(back.selections) == {"a", "b"} and back.selections["b"].tolist() == [10, 40]
    assert back.current.tolist() == [1, 2, 3]
    (conv,) = back.conversations.values()
    assert conv.key == rows_key(np.array([1, 2, 3]))
    assert [t.answer for t in conv.turns] == ["These are T cells.", "partial"]
    assert conv.turns[0].markers == ["CD3D", "IL7R"] and conv.turns[1].status == STATUS_STOPPED
    assert back.generated[0].sentences == ["CD79A MS4A1", "CD74"]
    a, ref = back.annotate, annotate_result()
    assert a is not None and list(a.labels) == list(ref.labels)
    assert np.allclose(a.probability, ref.probability) and a.candidates == ref.candidates
    assert a.warnings == ("a warning",) and a.clusters is None
    assert back.embed is not None and np.allclose(
        back.embed.embedding, full_state().embed.embedding
    )
    # another cell count: nothing applies
    assert load_session(path, N + 1).is_empty()


def test_selections_only_files_and_writers_stay_compatible(tmp_path):
    path = tmp_path / "s.json"
    model = SelectionModel(N)
    model.update([4, 5])
    model.save("old")
    save_selections(path, "/data/x.h5ad", model)  # version 1 writer
    assert load_session(path, N).selections["old"].tolist() == [4, 5]
    save_session(path, full_state())
    model.save("new")
    save_selections(path, "/data/x.h5ad", model)  # keeps the conversations of version 2
    doc = json.loads(path.read_text())
    assert doc["version"] == 2 and len(doc["conversations"]) == 1
    again = SelectionModel(N)
    assert load_selections(path, again) == 2 and set(again.saved) == {"old", "new"}


@pytest.mark.parametrize("damage", ["json", "npz", "rows"])
def test_damaged_session_raises_and_is_set_aside(tmp_path, damage):
    path = save_session(tmp_path / "s.json", full_state())
    if damage == "json":
        path.write_text('{"version": 2, "n_cells": ')
    elif damage == "npz":
        arrays_file(path).write_bytes(b"not a zip")
    else:
        doc = json.loads(path.read_text())
        doc["conversations"] = [{"no key": 1}]
        path.write_text(json.dumps(doc))
    with pytest.raises(InputFileError, match="cannot read the saved session"):
        load_session(path, N)
    moved = set_aside(path)
    assert moved is not None and moved.exists() and not path.exists()
    assert not arrays_file(path).exists()


def test_conversation_export_formats(tmp_path):
    conv = conversation(np.array([1, 2, 3]))
    md = export_conversation(tmp_path / "c.md", conv, data_name="x.h5ad")
    text = md.read_text()
    assert "## Question: Which?" in text and "*(stopped)*" in text and "CD3D, IL7R" in text
    js = export_conversation(tmp_path / "c.json", conv)
    assert json.loads(js.read_text())["turns"][0]["prompt"] == "P1"
    with pytest.raises(Exception, match="already exists"):
        export_conversation(md, conv)
    export_conversation(md, conv, overwrite=True)


# -- in a window -----------------------------------------------------------------------------
@pytest.fixture
def make_window(qtbot, tmp_path, monkeypatch):
    """Shown main windows with settings, sessions, models and logs under ``tmp_path``."""
    pytest.importorskip("PySide6")
    from PySide6.QtCore import QSettings

    from c2s_desktop.gui.main_window import MainWindow

    for name, sub in (("SESSION", "sessions"), ("LOG", "logs"), ("MODELS", "models")):
        monkeypatch.setenv(f"C2S_{name}_DIR", str(tmp_path / sub))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "cfg"))
    windows = []

    def make():
        w = MainWindow()
        qtbot.addWidget(w)
        w.show()
        windows.append(w)
        return w

    yield make
    for w in windows:
        qtbot.waitUntil(lambda w=w: not w.runner.is_busy(), timeout=30_000)


def test_autosave_then_restore_in_a_new_window(qtbot, make_window, real_h5ad):
    from c2s_desktop.core.selection import session_file

    w = make_window()
    w.session.delay_ms = 50
    w.open_file(real_h5ad)
    qtbot.waitUntil(lambda: w.dataset is not None and not w.runner.is_busy(), timeout=30_000)
    n = w.dataset.n_cells
    w.set_selection(np.arange(10, 30))
    w.save_selection("my cells")
    rows = np.arange(10, 30)
    conv = conversation(rows)
    w.assistant.set_conversations({conv.key: conv})
    w.set_result("annotate", annotate_result(n))
    path = session_file(real_h5ad)
    qtbot.waitUntil(lambda: w.session.n_writes >= 1, timeout=5_000)
    qtbot.waitUntil(lambda: not w.runner.is_busy(), timeout=30_000)
    doc = json.loads(path.read_text())
    assert doc["current"] == list(range(10, 30)) and "my cells" in doc["selections"]
    assert arrays_file(path).exists() and str(real_h5ad.parent) not in str(path.parent)
    w.close()

    again = make_window()
    again.open_file(real_h5ad)
    qtbot.waitUntil(lambda: "Session restored" in again.status.text(), timeout=30_000)
    assert again.selection.current.tolist() == list(range(10, 30))
    assert "my cells" in again.selection.saved
    assert again.results["annotate"].labels[0] == "T cell"
    assert "c2s_cell_type" in again.dataset.obs.columns  # shown as a category again
    restored = again.assistant.conversation()
    assert restored is not None and restored.turns[0].answer == "These are T cells."
    assert "These are T cells." in again.assistant.panel.transcript.toPlainText()
    qtbot.waitUntil(lambda: not again.runner.is_busy(), timeout=30_000)


def test_damaged_session_in_a_window_is_set_aside(qtbot, make_window, real_h5ad):
    from c2s_desktop.core.selection import session_file

    path = session_file(real_h5ad)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{ damaged")
    w = make_window()
    w.open_file(real_h5ad)
    qtbot.waitUntil(lambda: "could not be read" in w.status.text(), timeout=30_000)
    assert not path.exists()
    assert any(p.name.startswith(path.name + ".damaged-") for p in path.parent.iterdir())
    assert w.dataset is not None
