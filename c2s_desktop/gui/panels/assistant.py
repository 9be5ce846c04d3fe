"""Assistant panel: summarize the selection, ask about it, answers streamed beside marker genes."""

from __future__ import annotations

import html
from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent, QTextCursor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from ...core.markers import MarkerGene
from ...core.session import KIND_SUMMARY, STATUS_DONE, Conversation, Turn
from .selection import _table, fill_table

WARNING_STYLE = "background:#fff3cd;color:#7a4d00;border:1px solid #e0b84c;padding:4px"


def turn_html(turn: Turn) -> str:
    """One exchange as HTML for the transcript."""
    head = (
        "<b>Summary of the selection</b>"
        if turn.kind == KIND_SUMMARY
        else f"<b>Q:</b> {html.escape(turn.question)}"
    )
    status = "" if turn.status == STATUS_DONE else f" <i>({html.escape(turn.status)})</i>"
    answer = html.escape(turn.answer) or "<i>(no answer)</i>"
    return f"<p>{head}{status}</p><p style='white-space:pre-wrap'>{answer}</p><hr>"


class QuestionEdit(QPlainTextEdit):
    """The question box: Ctrl+Enter sends (plain Enter starts a new line)."""

    send_requested = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        keys = (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        if event.key() in keys and event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.send_requested.emit()
            event.accept()
            return
        super().keyPressEvent(event)


class AssistantPanel(QWidget):
    """Buttons, the streamed transcript of the selection's conversation, its top genes."""

    summarize_requested = Signal()
    ask_requested = Signal(str)
    stop_requested = Signal()
    prompt_requested = Signal()
    export_requested = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.title = QLabel("No selection")
        self.summarize_button = QPushButton("Summarize")
        self.summarize_button.setToolTip("Describe the selected cells in plain language")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop the answer (the part so far is kept)")
        self.prompt_button = QPushButton("Show prompt")
        self.prompt_button.setToolTip("The exact prompt sent, the template and the model")
        self.export_button = QPushButton("Export conversation…")
        buttons = QHBoxLayout()
        for b in (self.summarize_button, self.stop_button, self.prompt_button, self.export_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet(WARNING_STYLE)
        self.warning.hide()
        self.transcript = QTextBrowser()
        self.transcript.setOpenExternalLinks(False)
        self.markers = _table()
        self.markers_label = QLabel("Top genes vs rest")
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(self.markers_label)
        side_layout.addWidget(self.markers)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.transcript)
        split.addWidget(side)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        self.question = QuestionEdit()
        self.question.setPlaceholderText("Ask about the selected cells… (Ctrl+Enter sends)")
        self.question.setMaximumHeight(70)
        self.ask_button = QPushButton("Ask")
        ask_row = QHBoxLayout()
        ask_row.addWidget(self.question, 1)
        ask_row.addWidget(self.ask_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addLayout(buttons)
        layout.addWidget(self.warning)
        layout.addWidget(split, 1)
        layout.addLayout(ask_row)
        self.question.send_requested.connect(self.send)
        self.summarize_button.clicked.connect(self.summarize_requested)
        self.stop_button.clicked.connect(self.stop_requested)
        self.prompt_button.clicked.connect(self.prompt_requested)
        self.export_button.clicked.connect(self.export_requested)
        self.ask_button.clicked.connect(self.send)
        self._stream_start = -1
        self.set_busy(False)
        self.show_conversation(None)

    def send(self) -> None:
        """Ask the typed question (Ctrl+Enter or the Ask button)."""
        text = self.question.toPlainText().strip()
        if text:
            self.ask_requested.emit(text)

    def set_busy(self, busy: bool) -> None:
        """While an answer streams: Stop enabled, new requests disabled."""
        self.stop_button.setEnabled(busy)
        for w in (self.summarize_button, self.ask_button):
            w.setEnabled(not busy)

    def show_conversation(self, conv: Conversation | None, title: str = "") -> None:
        """Show the turns of ``conv`` (or an empty transcript for a new selection)."""
        self.title.setText(title or (conv.title if conv else "No selection"))
        turns = conv.turns if conv else []
        self.transcript.setHtml("".join(turn_html(t) for t in turns))
        self.prompt_button.setEnabled(any(t.prompt for t in turns))
        self.export_button.setEnabled(bool(turns))
        last = turns[-1] if turns else None
        self.show_warnings(last.warnings if last else [])
        self._stream_start = -1

    def begin_stream(self, heading: str) -> None:
        """Start a new answer at the end of the transcript; tokens go after ``heading``."""
        cursor = self.transcript.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertHtml(f"<p><b>{html.escape(heading)}</b></p><p></p>")
        self._stream_start = cursor.position()
        self.transcript.setTextCursor(cursor)

    def append_text(self, text: str) -> None:
        """Append streamed text to the answer being written."""
        cursor = self.transcript.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(text)
        self.transcript.setTextCursor(cursor)
        self.transcript.ensureCursorVisible()

    def show_warnings(self, warnings: Sequence[str]) -> None:
        """The model's warnings (e.g. not trained for this task), visibly above the answer."""
        self.warning.setText("\n".join(f"⚠ {w}" for w in warnings))
        self.warning.setVisible(bool(warnings))

    def show_markers(self, markers: Sequence[MarkerGene], note: str = "") -> None:
        """Top genes of the selection beside the answer."""
        fill_table(
            self.markers,
            ["gene", "log2 FC", "in %"],
            [(m.gene, f"{m.log2_fc:.2f}", f"{100 * m.frac_in:.0f}") for m in markers],
        )
        self.markers_label.setText(note or "Top genes vs rest")

    def clear_markers(self, note: str = "Top genes vs rest") -> None:
        self.show_markers([], note)

    def show_marker_names(self, genes: Sequence[str], note: str = "") -> None:
        """Stored top genes (names only) of an earlier answer."""
        fill_table(self.markers, ["gene", "log2 FC", "in %"], [(g, "", "") for g in genes])
        self.markers_label.setText(note or "Top genes vs rest")

    @property
    def marker_table(self) -> QTableWidget:
        return self.markers
