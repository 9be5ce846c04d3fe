"""Background jobs of the window recorded in the audit log (:mod:`c2s_desktop.core.audit`).

:func:`audited` wraps a core call so that its run, in the job's thread, becomes one audit entry:
the open dataset as input, the loaded model (file + sha256, or the server address), the task's
options and the files written. No cell data goes into the log.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core import audit
from ..core.progress import CancelToken, ProgressFn, no_progress

if TYPE_CHECKING:
    from .context import Window


def audited(
    window: Window,
    task: str,
    fn: Callable[..., Any],
    *,
    params: Mapping[str, Any] | None = None,
    outputs: Sequence[str | Path] = (),
    uses_model: bool = True,
) -> Callable[..., Any]:
    """``fn`` as a job function whose run is logged (status ok / failed / cancelled)."""
    inputs = [window.dataset.path] if window.dataset is not None else []
    record = window.engine_host.model_record() if uses_model else {}
    model = record.get("path")
    engine = record.get("server")
    if uses_model and model is None and engine is None and record.get("name"):
        engine = str(record["name"])
    accepted = inspect.signature(fn).parameters

    def run(
        *args: Any,
        progress: ProgressFn = no_progress,
        cancel: CancelToken | None = None,
        **kwargs: Any,
    ) -> Any:
        if "progress" in accepted:
            kwargs["progress"] = progress
        if "cancel" in accepted:
            kwargs["cancel"] = cancel
        with audit.job(
            task, inputs=inputs, model=model, engine=engine, params=dict(params or {})
        ) as entry:
            result = fn(*args, **kwargs)
            entry.outputs.extend(outputs)
            return result

    return run


def job_params(options: object) -> dict[str, Any]:
    """A task's options dataclass as plain audit parameters (cell rows and texts are dropped
    by :func:`c2s_desktop.core.audit.clean_params`)."""
    import dataclasses

    if dataclasses.is_dataclass(options) and not isinstance(options, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(options):
            value = getattr(options, f.name)
            if f.name in ("rows", "history"):
                continue
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                value = dataclasses.asdict(value)
            out[f.name] = value
        return out
    return {}
