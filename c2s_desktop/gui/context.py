"""What panels and controllers may use of the application window, as a typed protocol.

Controllers are given the window but know it only through :class:`Window`: they never import
``main_window`` (no import circle) and never call its private methods. Errors go through
:meth:`Window.report_error`; changes arrive as signals (``dataset_loaded``,
``dataset_closing``, ``selection_changed``, ``results_changed``), so nothing polls.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    from PySide6.QtCore import QSettings, SignalInstance
    from PySide6.QtWidgets import QLabel, QMenu

    from ..core.dataset import Dataset
    from ..core.selection import SelectionModel
    from .engine_host import EngineHost
    from .jobs import JobRunner


class ErrorReporter(Protocol):
    """Shows a failure to the user (a dialog; ``Cancelled`` only in the status bar)."""

    def __call__(self, exc: BaseException, title: str, path: Path | None = None) -> None: ...


class Window(Protocol):
    """The window as its controllers see it: jobs, the model, the dataset, errors, events."""

    runner: JobRunner
    engine_host: EngineHost
    dataset: Dataset | None
    selection: SelectionModel
    status: QLabel
    settings: QSettings
    menus: dict[str, QMenu]
    results: dict[str, Any]
    """Results of model tasks by task name (``annotate``, ``embed``)."""
    result_models: dict[str, dict[str, str | None]]
    """The model that made each result (the engine host's record)."""
    last_error: Any

    dataset_loaded: SignalInstance
    dataset_closing: SignalInstance
    selection_changed: SignalInstance
    """The current or a named selection changed (also after a new dataset opened)."""
    results_changed: SignalInstance
    """A model task's result was added (its task name)."""

    def report_error(self, exc: BaseException, title: str, path: Path | None = None) -> None:
        """Show ``exc`` to the user (dialog), or "Cancelled" in the status bar."""
        ...

    def set_result(self, task: str, result: Any) -> None:
        """Keep a model task's result (with the model that made it) and tell subscribers."""
        ...

    def set_selection(self, rows: np.ndarray, mode: str = ...) -> None: ...

    def add_obs_category(self, column: str, show: bool = True) -> None: ...

    def model_busy(self) -> None: ...

    def model_task_may_start(self, then: str) -> bool:
        """A dataset is open and the model free; else the status bar says which is missing."""
        ...

    def no_model(self) -> None: ...
