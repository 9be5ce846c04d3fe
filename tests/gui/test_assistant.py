"""Assistant dock with the demo model: summarize, chat, stop, prompt view, history export, and a
GUI thread that keeps running while the model answers."""

from __future__ import annotations

import json
import time

import numpy as np
from PySide6.QtCore import QElapsedTimer, Qt, QTimer
from PySide6.QtWidgets import QMessageBox

from c2s_desktop.core.session import KIND_QUESTION, KIND_SUMMARY, STATUS_DONE, STATUS_STOPPED

from ..conftest import sha256


def select_type(w, cell_type: str = "CD14+ Monocyte") -> np.ndarray:
    rows = np.flatnonzero(w.dataset.obs["cell_type"].astype(str).to_numpy() == cell_type)
    assert len(rows) > 10
    w.set_selection(rows)
    return rows


def wait_answer(qtbot, w, timeout: int = 30_000) -> None:
    qtbot.waitUntil(lambda: w.assistant.running is None, timeout=timeout)
    qtbot.waitUntil(lambda: not w.runner.is_busy("model"), timeout=timeout)


class Ticks:
    """A 20 ms QTimer recording the gaps between its ticks (GUI thread responsiveness)."""

    def __init__(self) -> None:
        self.clock = QElapsedTimer()
        self.clock.start()
        self.last = self.clock.elapsed()
        self.gaps: list[int] = []
        self.timer = QTimer()
        self.timer.setInterval(20)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self) -> None:
        now = self.clock.elapsed()
        self.gaps.append(now - self.last)
        self.last = now


def test_summarize_streams_beside_markers_responsively_and_shows_prompt(qtbot, with_model):
    w = with_model
    a = w.assistant
    rows = select_type(w)
    qtbot.waitUntil(lambda: not w.runner.is_busy(), timeout=10_000)
    qtbot.wait(200)  # the selection's own redraws are done
    pieces: list[str] = []
    a.token.connect(pieces.append)
    ticks = Ticks()
    qtbot.wait(60)
    a.panel.summarize_button.click()
    assert a.running is not None
    assert not a.panel.summarize_button.isEnabled() and a.panel.stop_button.isEnabled()
    wait_answer(qtbot, w)
    ticks.timer.stop()
    print(f"timer ticks: {len(ticks.gaps)}, max gap {max(ticks.gaps)} ms")
    assert len(ticks.gaps) >= 5 and max(ticks.gaps) < 100

    conv = a.conversation()
    assert conv is not None and conv.n_cells == len(rows)
    (turn,) = conv.turns
    assert turn.kind == KIND_SUMMARY and turn.status == STATUS_DONE
    assert len(pieces) > 1 and "".join(pieces).strip() == turn.answer  # streamed in pieces
    assert turn.answer and turn.answer in a.panel.transcript.toPlainText()
    assert "natural_language_interpretation" in turn.template_id and "cells" in turn.prompt
    table = a.panel.markers
    assert table.rowCount() == len(turn.markers) > 0
    assert table.item(0, 0).text() == turn.markers[0]
    # the demo model was not trained to summarize: the warning is shown
    assert not a.panel.warning.isHidden()
    assert "not trained for 'summarize'" in a.panel.warning.text()
    assert not a.panel.stop_button.isEnabled()

    qtbot.waitUntil(lambda: w.engine_host.sha256 is not None, timeout=10_000)
    a.panel.prompt_button.click()
    dialog = a.prompt_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.text.toPlainText() == turn.prompt and dialog.text.isReadOnly()
    assert dialog.template_label.text() == turn.template_id
    assert dialog.model_label.text() == w.engine_host.info.name
    assert dialog.sha_label.text() == w.engine_host.sha256
    dialog.close()


def test_chat_history_per_selection_and_export(qtbot, with_model, tmp_path, monkeypatch):
    w = with_model
    select_type(w)
    a = w.assistant
    a.panel.question.setPlainText("What cell type are these?")
    qtbot.keyClick(a.panel.question, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert a.running is not None  # Ctrl+Enter sent it
    wait_answer(qtbot, w)
    assert a.panel.question.toPlainText() == ""
    a.ask("Are they activated?")
    wait_answer(qtbot, w)
    turns = a.conversation().turns
    assert [t.kind for t in turns] == [KIND_QUESTION, KIND_QUESTION]
    assert turns[1].prompt.endswith("Question: Are they activated?\nAnswer:")
    assert f"Question: What cell type are these?\nAnswer: {turns[0].answer}" in turns[1].prompt
    # another selection has its own (empty) conversation; going back shows the first again
    select_type(w, "CD19+ B")
    qtbot.waitUntil(lambda: a.panel.transcript.toPlainText().strip() == "", timeout=2_000)
    select_type(w)
    text = a.panel.transcript.toPlainText
    qtbot.waitUntil(lambda: "Are they activated?" in text(), timeout=2_000)

    answer = turns[0].answer
    md = a.export_to(tmp_path / "chat.md")
    assert md is not None and "Question: What cell type are these?" in md.read_text()
    assert answer in md.read_text() and turns[1].prompt in md.read_text()
    js = a.export_to(tmp_path / "chat.json")
    assert json.loads(js.read_text())["turns"][1]["question"] == "Are they activated?"
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    md.write_text("keep")
    assert a.export_to(md) is None and md.read_text() == "keep"
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    assert a.export_to(md) == md and answer in md.read_text()
    before = sha256(w.dataset.path)
    assert a.export_to(w.dataset.path) is None
    assert sha256(w.dataset.path) == before and "input file" in w.last_error.text()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_stop_during_a_stream_keeps_the_partial_answer(qtbot, with_model):
    w = with_model
    select_type(w)
    a = w.assistant
    # random text at a high temperature: a long answer, surely stopped mid-stream
    a.sampling = {"max_tokens": 4000, "temperature": 3.0, "top_k": 0, "top_p": 1.0}
    stopped_at: list[float] = []

    def stop_once(_piece: str) -> None:
        if not stopped_at:
            stopped_at.append(time.monotonic())
            a.panel.stop_button.click()

    a.token.connect(stop_once)
    a.ask("Describe these cells in detail.")
    wait_answer(qtbot, w)
    ended = time.monotonic()
    (turn,) = a.conversation().turns
    assert stopped_at and ended - stopped_at[0] < 1.0
    print(f"stopped {ended - stopped_at[0]:.3f} s after Stop; kept {turn.answer!r}")
    assert turn.status == STATUS_STOPPED and turn.answer
    assert "(stopped)" in a.panel.transcript.toPlainText()
    assert turn.answer in a.panel.transcript.toPlainText()
    assert a.panel.summarize_button.isEnabled()

    # Esc (cancel every job) during the next answer keeps the part shown so far as well
    first: list[str] = []

    def escape_once(piece: str) -> None:
        if not first:
            first.append(piece)
            w.cancel_jobs()

    a.token.disconnect(stop_once)
    a.token.connect(escape_once)
    a.ask("And now?")
    wait_answer(qtbot, w)
    second = a.conversation().turns[-1]
    assert first and second.question == "And now?" and second.status == STATUS_STOPPED
    assert second.answer.startswith(first[0])  # what was streamed is kept
    assert a.running is None and a.panel.ask_button.isEnabled()
