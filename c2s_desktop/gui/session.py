"""Autosave: the window's work is written to the dataset's session a few seconds after each change
and when the window closes, and restored when the same dataset is opened again.

Changes are noticed by comparing a cheap fingerprint of the state (object identities and
revision counters) on a short timer, so every way of changing a selection or a result is covered
without hooks in each widget; the write itself is debounced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, QTimer, Signal, SignalInstance
from PySide6.QtWidgets import QApplication

from ..core.errors import C2SError
from ..core.logs import log_exception
from ..core.selection import Selection, session_file
from ..core.session import SessionState, load_session, save_session, set_aside

DELAY_MS = 3000


class SessionController(QObject):
    """Follows the window's change signals; saves its state (debounced, atomic) and restores it
    per dataset. Nothing polls: every change arrives as a signal (see :meth:`follow`)."""

    restored = Signal(str)
    """A session was restored (the status text)."""
    saved = Signal(str)
    """The session was written (its path)."""

    def __init__(self, window: Any, delay_ms: int = DELAY_MS) -> None:
        super().__init__(window)
        self.window = window
        self.path: Path | None = None
        self.restored_text = ""
        self.n_writes = 0
        self._dataset: Any = None
        self._fingerprint: tuple = ()
        self._saved_fingerprint: tuple = ()
        self._saved_arrays: tuple = ()
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(delay_ms)
        self._debounce.timeout.connect(self.save_now)
        window.runner.idle.connect(self.check)
        window.dataset_closing.connect(self.save_now)
        window.dataset_loaded.connect(self.check)
        window.installEventFilter(self)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.save_now)

    def follow(self, *signals: SignalInstance) -> None:
        """Schedule a save whenever one of ``signals`` reports a change of the open dataset's
        work (a newly opened dataset is restored on ``dataset_loaded``, once it is shown)."""
        for signal in signals:
            signal.connect(self.changed)

    def changed(self, *_: object) -> None:
        w = self.window
        if w.dataset is None or w.dataset is not self._dataset:
            return
        now = self.fingerprint()
        if now != self._fingerprint:
            self._fingerprint = now
            self._debounce.start()

    @property
    def delay_ms(self) -> int:
        return self._debounce.interval()

    @delay_ms.setter
    def delay_ms(self, value: int) -> None:
        self._debounce.setInterval(value)

    # -- state ---------------------------------------------------------------------------------
    def _results(self) -> dict[str, Any]:
        return getattr(self.window, "results", None) or {}

    def _arrays_fingerprint(self) -> tuple:
        results = self._results()
        return (id(results.get("annotate")), id(results.get("embed")))

    def fingerprint(self) -> tuple:
        """Identities and revisions of everything the session holds."""
        w = self.window
        sel = w.selection
        assistant = getattr(w, "assistant", None)
        generator = getattr(w, "generator", None)
        return (
            id(w.dataset),
            id(sel.current),
            tuple((name, id(s.rows)) for name, s in sel.saved.items()),
            self._arrays_fingerprint(),
            assistant.revision if assistant is not None else 0,
            generator.revision if generator is not None else 0,
            getattr(getattr(w, "clusters", None), "revision", 0),
        )

    def state(self) -> SessionState:
        """The window's work as a :class:`SessionState`."""
        w = self.window
        results = self._results()
        assistant = getattr(w, "assistant", None)
        generator = getattr(w, "generator", None)
        clusters = getattr(w, "clusters", None)
        return SessionState(
            n_cells=w.selection.n_cells,
            data_path=str(w.dataset.path) if w.dataset is not None else "",
            selections={name: s.rows for name, s in w.selection.saved.items()},
            current=w.selection.current,
            conversations=dict(assistant.conversations) if assistant is not None else {},
            generated=list(generator.sets) if generator is not None else [],
            annotate=results.get("annotate"),
            embed=results.get("embed"),
            cluster_source=clusters.source if clusters is not None else "",
            cluster_names=dict(clusters.names) if clusters is not None else {},
        )

    # -- watching ------------------------------------------------------------------------------
    def check(self) -> None:
        """Restore on a newly opened dataset; schedule a save when anything changed."""
        w = self.window
        if w.dataset is not self._dataset:
            self._dataset = w.dataset
            if w.dataset is not None:
                self.restore()
            self._fingerprint = self._saved_fingerprint = self.fingerprint()
            self._saved_arrays = self._arrays_fingerprint()
            return
        self.changed()

    def save_now(self) -> Path | None:
        """Write the session if it changed since the last write (atomic); None if not written."""
        self._debounce.stop()
        w = self.window
        if w.dataset is None or self._dataset is not w.dataset or self.path is None:
            return None
        now = self.fingerprint()
        if now == self._saved_fingerprint:
            return None
        arrays = self._arrays_fingerprint()
        try:
            save_session(self.path, self.state(), arrays=arrays != self._saved_arrays)
        except C2SError as exc:
            w.status.setText(f"Autosave failed: {exc.one_line()}")
            return None
        except Exception as exc:  # noqa: BLE001 - autosave must never take the window down
            log_exception(exc, "autosave")
            w.status.setText("Autosave failed (details in the log file)")
            return None
        self._saved_fingerprint = self._fingerprint = now
        self._saved_arrays = arrays
        self.n_writes += 1
        self.saved.emit(str(self.path))
        return self.path

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if watched is self.window:
            if event.type() == QEvent.Type.Close:
                self.save_now()
            elif event.type() == QEvent.Type.WindowTitleChange:
                self.check()  # the window names a newly opened file: restore right away
        return False

    # -- restoring -----------------------------------------------------------------------------
    def restore(self) -> SessionState | None:
        """Read the session of the open dataset and give each part back to its owner."""
        w = self.window
        ds = w.dataset
        self.restored_text = ""
        try:
            self.path = session_file(ds.path)
        except OSError:
            self.path = None
            return None
        self._reset_parts()
        if not self.path.exists():
            return None
        try:
            state = load_session(self.path, ds.n_cells)
        except C2SError as exc:
            moved = set_aside(self.path)
            where = f"; it was renamed to {moved.name}" if moved else ""
            self.restored_text = f"The saved session could not be read{where}"
            self._tell(f"{self.restored_text} ({exc.message})")
            return None
        if state.is_empty():
            return state
        self._apply(state)
        parts = []
        if state.selections:
            parts.append(f"{len(state.selections)} saved selection(s)")
        if state.conversations:
            parts.append(f"{len(state.conversations)} conversation(s)")
        if state.annotate is not None:
            parts.append("cell types")
        if state.embed is not None:
            parts.append("embedding")
        if state.generated:
            parts.append(f"{len(state.generated)} generated set(s)")
        if state.cluster_names:
            parts.append(f"{len(state.cluster_names)} cluster name(s)")
        self.restored_text = "Session restored" + (f": {', '.join(parts)}" if parts else "")
        self._tell(self.restored_text)
        self.restored.emit(self.restored_text)
        return state

    def _tell(self, text: str) -> None:
        """Status text now and once the window has finished showing the new file."""
        self.window.status.setText(text)
        QTimer.singleShot(0, self, lambda: self.window.status.setText(text))

    def _reset_parts(self) -> None:
        w = self.window
        assistant = getattr(w, "assistant", None)
        if assistant is not None:
            assistant.set_conversations({})
        generator = getattr(w, "generator", None)
        if generator is not None:
            generator.set_sets([])

    def _apply(self, state: SessionState) -> None:
        w = self.window
        for name, rows in state.selections.items():
            w.selection.saved.setdefault(name, Selection(name, rows))
        w.selection.changed()
        panel = getattr(w, "selection_panel", None)
        if panel is not None:
            panel.set_saved(list(w.selection.saved))
        results = getattr(w, "results", None)
        if isinstance(results, dict):
            for key in ("annotate", "embed"):
                value = getattr(state, key)
                if value is not None:
                    results[key] = value
                    self._show_result(key, value)
        assistant = getattr(w, "assistant", None)
        if assistant is not None:
            assistant.set_conversations(state.conversations)
        generator = getattr(w, "generator", None)
        if generator is not None:
            generator.set_sets(state.generated)
        clusters = getattr(w, "clusters", None)
        if clusters is not None and state.cluster_names:
            clusters.set_names(state.cluster_source, state.cluster_names)
        if len(state.current):
            w.set_selection(state.current)
        if assistant is not None:
            assistant.refresh()  # show the restored selection's conversation now

    def _show_result(self, key: str, value: object) -> None:
        """Let the window show a restored result: the annotate controller's ``apply`` (obs
        column, view, table) or the window's embedding display."""
        w = self.window
        annotate = getattr(w, "annotate", None)
        hook = {
            "annotate": getattr(annotate, "apply", None),
            "embed": getattr(w, "show_embedding_result", None),
        }.get(key)
        if callable(hook):
            try:
                hook(value)
            except Exception as exc:  # noqa: BLE001 - a display problem must not stop the restore
                log_exception(exc, "session restore")
