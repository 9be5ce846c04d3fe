"""The main window's model: the model manager, loading, a server connection, and the model
tasks started from the window itself (Annotate dock, Embed cells).

A mixin of :class:`.main_window.MainWindow`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.results import EMBEDDING, LAYOUT, TASK_EMBED, embed_obsm
from ..core.tasks.embed import EmbedOptions, EmbedResult, embed_cells
from .audit_jobs import audited
from .engine_host import MODEL_SLOT
from .panels.models import ModelManager


class WindowModels:
    """Load a model (file or server) and run the window's own model tasks."""

    def show_model_manager(self) -> ModelManager:
        if self.model_manager is None:
            self.model_manager = ModelManager(self)
        else:
            self.model_manager.refresh()
        self.model_manager.show()
        self.model_manager.raise_()
        return self.model_manager

    def load_model(self, path: Path) -> bool:
        """Load the GGUF ``path`` in the background (remembered for the next start)."""
        if not self.engine_host.load(Path(path)):
            self.model_busy()
            return False
        return True

    def model_busy(self) -> None:
        self.status.setText("The model is busy with another task: Cancel (Esc) stops it")

    def model_task_may_start(self, then: str) -> bool:
        """Whether a model task may start: a dataset is open and the model free; else the status
        bar says which is missing ("Open a dataset first, then ``then``")."""
        if self.dataset is None:
            self.status.setText(f"Open a dataset first, then {then}")
            return False
        if self.runner.is_busy(MODEL_SLOT):
            self.model_busy()
            return False
        return True

    def no_model(self) -> None:
        self.status.setText("No model loaded: choose one in Model ▸ Models… (Ctrl+M)")
        self.show_model_manager()

    def _model_changed(self) -> None:
        self.restart_action.setEnabled(self.engine_host.info is not None)

    def show_annotate(self) -> None:
        self.annotate_dock.show()
        self.annotate_dock.raise_()
        self.annotate.update_estimate()
        self.annotate_panel.start_button.setFocus()

    def embed_cells(self) -> None:
        """C2S embedding of the selection (all cells when none) → the "X_c2s" embedding."""
        if not self.model_task_may_start("embed cells"):
            return
        if not self.engine_host.ensure(self._start_embed):
            self.no_model()

    def _start_embed(self) -> None:
        if self.dataset is None:
            return
        sel = self.selection.current
        rows = np.asarray(sel, dtype=np.int64) if len(sel) else None
        n = len(rows) if rows is not None else self.dataset.n_cells
        self.status.setText(f"Embedding {n:,} cells with the C2S model…")

        def run(dataset, options, progress, cancel) -> EmbedResult:  # noqa: ANN001
            engine = self.engine_host.engine()
            return embed_cells(dataset, engine, options, progress=progress, cancel=cancel)

        ds = self.dataset
        self.runner.start(
            MODEL_SLOT,
            audited(self, "embed", run, params={"cells": n}),
            ds,
            EmbedOptions(rows=rows),
            on_success=lambda result: (
                self.show_embedding_result(result) if self.dataset is ds else None
            ),
            on_failure=lambda exc: self._model_failed(exc, "Embedding failed"),
        )

    def show_embedding_result(self, result: EmbedResult) -> None:
        if self.dataset is None:
            return
        xy = embed_obsm(result, self.dataset.n_cells)[LAYOUT]
        self.set_result(TASK_EMBED, result)
        self.embeddings[EMBEDDING] = xy
        self.view.add_embedding(EMBEDDING)
        self.show_embedding(EMBEDDING)
        missing = self.dataset.n_cells - len(result.rows)
        self.status.setText(
            f"C2S embedding of {len(result.rows):,} cells ({result.embedding.shape[1]} dims) "
            f"shown as {EMBEDDING}"
            + (f"; {missing:,} cells not embedded are not drawn" if missing else "")
        )

    def _model_failed(self, exc: BaseException, title: str) -> None:
        if not self.engine_host.handle_failure(exc):
            self.report_error(exc, title)

    def connect_server(self) -> bool:
        """Ask for an OpenAI-compatible server and use its model instead of a local one."""
        from .panels.server import ServerDialog

        dialog = ServerDialog(self)
        if dialog.exec() != ServerDialog.DialogCode.Accepted:
            return False
        if not self.engine_host.connect_server(dialog.options()):
            self.model_busy()
            return False
        return True
