"""Assistant controller: Summarize and Ask about the current selection, streamed, stoppable.

Each selection (by its rows) has its own conversation, kept in memory and autosaved with the
session. Answers stream token by token into the panel (batched on a short timer so the window
stays responsive); Stop ends the answer within a second and keeps the part written so far.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QLabel,
    QPlainTextEdit,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ..core.catalog import ASK, SUMMARIZE, capabilities
from ..core.dataset import Dataset
from ..core.engine.base import Engine
from ..core.errors import C2SError, Cancelled
from ..core.progress import CancelToken, EitherSet, ProgressFn, no_progress
from ..core.session import (
    KIND_QUESTION,
    KIND_SUMMARY,
    STATUS_DONE,
    STATUS_FAILED,
    STATUS_STOPPED,
    Conversation,
    Turn,
    export_conversation,
    rows_key,
)
from ..core.tasks.chat import ASK_PARAMS, AskOptions, AskResult, ask
from ..core.tasks.chat import Turn as ChatTurn
from ..core.tasks.summarize import SUMMARY_PARAMS, SummarizeOptions, SummaryResult, summarize
from .actions import window_action, window_menu
from .audit_jobs import audited, job_params
from .engine_host import MODEL_SLOT
from .export_dialog import confirm_overwrite, refuse_input
from .panels.assistant import AssistantPanel

STATUS_RUNNING = "running"
FLUSH_MS = 40


def run_summary(
    dataset: Dataset,
    engine: Engine,
    options: SummarizeOptions,
    stop: threading.Event,
    on_token: Callable[[str], None],
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> SummaryResult:
    """:func:`summarize` stoppable by ``stop`` (its result, partial answer included, returns)."""
    return summarize(
        dataset,
        engine,
        options,
        on_token=on_token,
        progress=progress,
        cancel=EitherSet(stop, cancel),
    )


def run_ask(
    dataset: Dataset,
    engine: Engine,
    question: str,
    options: AskOptions,
    stop: threading.Event,
    on_token: Callable[[str], None],
    cancel: CancelToken | None = None,
) -> AskResult:
    """:func:`ask` stoppable by ``stop``."""
    return ask(
        dataset, engine, question, options, on_token=on_token, cancel=EitherSet(stop, cancel)
    )


def no_model(window: Any) -> None:
    """Tell the user that no model is loaded (and open the model manager when there is one)."""
    if callable(getattr(window, "no_model", None)):
        window.no_model()
        return
    try:
        window.engine_host.engine()
    except C2SError as exc:
        window.report_error(exc, "No model")


class PromptDialog(QDialog):
    """Read-only view of the exact prompt of an answer, its template and the model."""

    def __init__(self, parent: QWidget, turn: Turn) -> None:
        super().__init__(parent)
        self.setWindowTitle("Prompt sent to the model")
        self.resize(720, 520)
        form = QFormLayout()
        self.template_label = QLabel(turn.template_id or "n/a")
        self.model_label = QLabel(turn.model or "n/a")
        self.sha_label = QLabel(turn.model_sha256 or "not yet computed")
        for w in (self.template_label, self.model_label, self.sha_label):
            w.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("Template", self.template_label)
        form.addRow("Model", self.model_label)
        form.addRow("Model sha256", self.sha_label)
        self.text = QPlainTextEdit(turn.prompt)
        self.text.setReadOnly(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.text, 1)
        layout.addWidget(buttons)


class AssistantController(QObject):
    """Creates the Assistant dock and menu actions; runs summaries and questions as model jobs."""

    token = Signal(str)
    changed = Signal()
    """A conversation changed (for the autosave)."""

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.panel = AssistantPanel()
        self.dock = QDockWidget("Assistant", window)
        self.dock.setObjectName("dock_assistant")
        scroll = QScrollArea()  # keeps the window's minimum height small on short screens
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.panel)
        self.dock.setWidget(scroll)
        # under the Selection dock (and the docks tabbed with it), as in the UI sketch
        window.addDockWidget(
            Qt.DockWidgetArea.RightDockWidgetArea, self.dock, Qt.Orientation.Vertical
        )
        selection_dock = window.findChild(QDockWidget, "dock_selection")
        if selection_dock is not None:
            window.resizeDocks([selection_dock, self.dock], [1, 1], Qt.Orientation.Vertical)
        view_menu = window_menu(window, "view")
        if view_menu is not None:
            view_menu.addAction(self.dock.toggleViewAction())
        self.conversations: dict[str, Conversation] = {}
        self.revision = 0
        self.sampling: dict[str, Any] = {}
        """Overrides of the tasks' sampling parameters (``max_tokens``, ``temperature``, ...)."""
        self.prompt_dialog: PromptDialog | None = None
        self.running: Turn | None = None
        self._running_key = ""
        self._stop = threading.Event()
        self._pending: list[str] = []
        self._shown_rows: np.ndarray | None = None
        self._shown_key = ""
        self._flush_timer = QTimer(self)
        self._flush_timer.setInterval(FLUSH_MS)
        self._flush_timer.timeout.connect(self._flush)
        window.selection_changed.connect(self._follow_selection)
        window.dataset_loaded.connect(self._follow_selection)
        self.token.connect(self._on_token)
        self._build_actions()
        p = self.panel
        p.summarize_requested.connect(self.summarize)
        p.ask_requested.connect(self.ask)
        p.stop_requested.connect(self.stop)
        p.prompt_requested.connect(self.show_prompt)
        p.export_requested.connect(self.choose_export)

    def _build_actions(self) -> None:
        w = self.window
        self.summarize_action = window_action(
            w, "&Summarize selection", self.summarize, "Ctrl+Shift+U", "tasks"
        )
        self.ask_action = window_action(
            w, "&Ask about selection…", self.focus_question, "Ctrl+Shift+K", "tasks"
        )
        toolbar = getattr(w, "toolbar", None)
        if toolbar is not None:
            toolbar.addAction(self.summarize_action)
            toolbar.addAction(self.ask_action)
        self.summarize_action.setIconText("Summarize")
        self.ask_action.setIconText("Ask")

    # -- which conversation is shown -----------------------------------------------------------
    def current_rows(self) -> np.ndarray:
        return np.asarray(self.window.selection.current, dtype=np.int64)

    def title_for(self, rows: np.ndarray) -> str:
        """A saved selection's name when the rows match one, else the cell count."""
        for sel in self.window.selection.saved.values():
            if len(sel.rows) == len(rows) and np.array_equal(sel.rows, rows):
                return f"'{sel.name}' ({len(rows):,} cells)"
        return f"Selection of {len(rows):,} cells"

    def conversation(self, rows: np.ndarray | None = None) -> Conversation | None:
        """The conversation of ``rows`` (default: the current selection), if any."""
        rows = self.current_rows() if rows is None else rows
        return self.conversations.get(rows_key(rows)) if len(rows) else None

    def _follow_selection(self) -> None:
        rows = self.window.selection.current
        if rows is self._shown_rows:
            return
        self._shown_rows = rows
        key = rows_key(rows) if len(rows) else ""
        if key == self._shown_key:
            return
        self._shown_key = key
        self.refresh()

    def refresh(self) -> None:
        """Show the current selection's conversation (the running answer stays visible)."""
        rows = self.current_rows()
        key = rows_key(rows) if len(rows) else ""
        self._shown_key = key
        conv = self.conversations.get(key)
        title = self.title_for(rows) if len(rows) else "No selection"
        self.panel.show_conversation(conv, title)
        with_markers = [t for t in conv.turns if t.markers] if conv else []
        if with_markers:
            self.panel.show_marker_names(with_markers[-1].markers)
        else:
            self.panel.clear_markers()
        if self.running is not None and key == self._running_key:
            self.panel.begin_stream(self._heading(self.running))
            self.panel.append_text(self.running.answer)

    def set_conversations(self, conversations: dict[str, Conversation]) -> None:
        """Replace every conversation (a dataset was opened / its session restored)."""
        self.conversations = dict(conversations)
        self.revision += 1
        self.refresh()
        self.changed.emit()

    # -- requests ------------------------------------------------------------------------------
    def focus_question(self) -> None:
        self.dock.show()
        self.dock.raise_()
        self.panel.question.setFocus()

    def _status(self, text: str) -> None:
        self.window.status.setText(text)

    def _can_start(self) -> bool:
        w = self.window
        if w.dataset is None:
            self._status("Open a dataset first")
            return False
        if not len(w.selection.current):
            self._status("Select cells first: the assistant talks about the selection")
            return False
        if self.running is not None:
            self._status("An answer is being written: Stop it first")
            return False
        host = w.engine_host
        if w.runner.is_busy(MODEL_SLOT) and host.loading is None:
            self._status("The model is busy with another task; Cancel (Esc) stops it")
            return False
        return True

    def _with_engine(self, start: Callable[[], None]) -> None:
        """Run ``start`` once a model is ready (loading the remembered one if needed)."""
        if not self.window.engine_host.ensure(start):
            no_model(self.window)

    def summarize(self) -> None:
        """Summarize the current selection (streamed)."""
        if self._can_start():
            rows = self.current_rows().copy()
            self._with_engine(lambda: self._start(KIND_SUMMARY, "", rows))

    def ask(self, question: str) -> None:
        """Ask ``question`` about the current selection, with the conversation so far."""
        question = question.strip()
        if not question:
            return
        if self._can_start():
            rows = self.current_rows().copy()
            self._with_engine(lambda: self._start(KIND_QUESTION, question, rows))

    def stop(self) -> None:
        """Stop the answer being written (kept, marked stopped)."""
        if self.running is not None:
            self._stop.set()
            self._status("Stopping the answer…")

    # -- running -------------------------------------------------------------------------------
    @staticmethod
    def _heading(turn: Turn) -> str:
        return "Summary of the selection" if turn.kind == KIND_SUMMARY else f"Q: {turn.question}"

    def _start(self, kind: str, question: str, rows: np.ndarray) -> None:
        w = self.window
        if w.dataset is None or self.running is not None:
            return
        self._follow_selection()
        try:
            engine = w.engine_host.engine()
        except C2SError as exc:
            self._failed(exc)
            return
        key = rows_key(rows)
        conv = self.conversations.get(key)
        if conv is None:
            conv = Conversation(key, self.title_for(rows), len(rows))
            self.conversations[key] = conv
        info = w.engine_host.info
        turn = Turn(kind, question, "", STATUS_RUNNING, model=info.name if info else "")
        self.running, self._running_key = turn, key
        self._stop = threading.Event()
        self._pending.clear()
        if key == self._shown_key:
            self.panel.begin_stream(self._heading(turn))
            # before the answer: is the model trained for this at all?
            caps = capabilities(engine.info.metadata)
            warning = caps.warning_for(SUMMARIZE if kind == KIND_SUMMARY else ASK)
            self.panel.show_warnings([warning] if warning else [])
        self.panel.set_busy(True)
        if kind == KIND_QUESTION:
            self.panel.question.clear()
            history = tuple(
                ChatTurn(t.question, t.answer)
                for t in conv.turns
                if t.kind == KIND_QUESTION and t.answer
            )
            params = dataclasses.replace(ASK_PARAMS, **self.sampling)
            options = AskOptions(rows=rows, history=history, params=params)
            fn, args = run_ask, (w.dataset, engine, question, options)
        else:
            params = dataclasses.replace(SUMMARY_PARAMS, **self.sampling)
            fn, args = run_summary, (w.dataset, engine, SummarizeOptions(rows=rows, params=params))
        self._flush_timer.start()
        self._status("Summarizing the selection…" if kind == KIND_SUMMARY else "Answering…")
        task = "summarize" if kind == KIND_SUMMARY else "ask"
        job = w.runner.start(
            MODEL_SLOT,
            audited(w, task, fn, params=job_params(args[-1])),
            *args,
            self._stop,
            self.token.emit,
            on_success=self._finished,
            on_failure=self._failed,
        )
        job.done.connect(lambda: self._job_done(turn))

    def _on_token(self, text: str) -> None:
        self._pending.append(text)

    def _flush(self) -> None:
        if not self._pending or self.running is None:
            return
        text = "".join(self._pending)
        self._pending.clear()
        self.running.answer += text
        if self._running_key == self._shown_key:
            self.panel.append_text(text)

    def _finished(self, result: SummaryResult | AskResult) -> None:
        turn = self.running
        if turn is None:
            return
        self._flush()
        host = self.window.engine_host
        turn.answer = result.text if isinstance(result, SummaryResult) else result.answer
        turn.status = STATUS_STOPPED if result.finish_reason == "cancelled" else STATUS_DONE
        turn.prompt, turn.template_id = result.prompt, result.template_id
        turn.model_sha256 = host.sha256 or ""
        turn.warnings = list(result.warnings)
        if isinstance(result, SummaryResult):
            turn.markers = [m.gene for m in result.markers]
        self._end(turn)
        if self._running_key == self._shown_key and isinstance(result, SummaryResult):
            if result.markers:
                self.panel.show_markers(result.markers)
            else:
                self.panel.clear_markers("every cell is selected: no top genes vs rest")
        self._status(
            "Answer stopped (the part so far is kept)"
            if turn.status == STATUS_STOPPED
            else "Answer complete"
        )

    def _failed(self, exc: BaseException) -> None:
        turn = self.running
        if turn is not None:
            self._flush()
            turn.status = STATUS_STOPPED if isinstance(exc, Cancelled) else STATUS_FAILED
            self._end(turn)
        if isinstance(exc, Cancelled):
            self._status("Answer stopped (the part so far is kept)")
            return
        if not self.window.engine_host.handle_failure(exc):
            self.window.report_error(exc, "The assistant could not answer")

    def _job_done(self, turn: Turn) -> None:
        """The thread of ``turn`` ended without a result delivered (e.g. cancelled with Esc):
        keep the part written so far."""
        if self.running is turn:
            self._flush()
            turn.status = STATUS_STOPPED
            self._end(turn)
            self._status("Answer stopped (the part so far is kept)")

    def _end(self, turn: Turn) -> None:
        self._flush_timer.stop()
        self._pending.clear()
        conv = self.conversations.get(self._running_key)
        if conv is not None and turn not in conv.turns:
            conv.turns.append(turn)
        self.running = None
        self.panel.set_busy(False)
        self.revision += 1
        self.changed.emit()
        if self._running_key == self._shown_key:
            conv_now = self.conversations.get(self._shown_key)
            self.panel.show_conversation(conv_now, self.panel.title.text())
            if turn.warnings:
                self.panel.show_warnings(turn.warnings)

    # -- evidence and export ------------------------------------------------------------------
    def last_turn(self) -> Turn | None:
        conv = self.conversation()
        turns = [t for t in conv.turns if t.prompt] if conv else []
        return turns[-1] if turns else None

    def show_prompt(self) -> PromptDialog | None:
        """Open the prompt of the latest answer about the current selection."""
        turn = self.last_turn()
        if turn is None:
            self._status("No answer yet: nothing was sent to the model")
            return None
        if not turn.model_sha256 and self.window.engine_host.sha256:
            turn.model_sha256 = self.window.engine_host.sha256
        self.prompt_dialog = PromptDialog(self.window, turn)
        self.prompt_dialog.open()
        return self.prompt_dialog

    def default_export_path(self, suffix: str = ".md") -> Path:
        ds = self.window.dataset
        base = ds.path if ds is not None else Path.home() / "c2s"
        return base.with_name(f"{base.stem}_conversation{suffix}")

    def choose_export(self) -> None:
        conv = self.conversation()
        if conv is None or not conv.turns:
            self._status("No conversation about this selection yet")
            return
        path, _ = QFileDialog.getSaveFileName(
            self.window,
            "Export conversation",
            str(self.default_export_path()),
            "Markdown (*.md);;JSON (*.json)",
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        if path:
            self.export_to(Path(path))

    def export_to(self, path: Path) -> Path | None:
        """Write the current selection's conversation (``.md`` or ``.json``); asks before
        replacing a file and refuses the input file."""
        conv = self.conversation()
        w = self.window
        if conv is None or not conv.turns:
            self._status("No conversation about this selection yet")
            return None
        if refuse_input(w, path):
            return None
        overwrite = False
        if path.exists():
            if not confirm_overwrite(w, [path]):
                self._status("Export cancelled")
                return None
            overwrite = True
        name = w.dataset.path.name if w.dataset is not None else ""
        try:
            out = export_conversation(path, conv, data_name=name, overwrite=overwrite)
        except C2SError as exc:
            w.report_error(exc, "Cannot export the conversation")
            return None
        self._status(f"Conversation written to {out}")
        return out
