"""LoRA fine-tuning of C2S checkpoints on a lab's labelled cells.

Importing this package needs no torch: :func:`plan_split`, :func:`train_available` and the
option and report types are light; :func:`finetune`, :func:`measure_step` and
:func:`run_finetune_process` import torch, transformers and peft when called.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .options import FinetuneOptions, FinetuneResult, SplitPlan, StepReport

if TYPE_CHECKING:
    from ..progress import CancelToken, ProgressFn
    from .base import BaseInfo, check_base, train_available
    from .process import run_finetune_process
    from .split import plan_split

# Imported on first use, so ``c2s --help`` (which imports the options) loads no NumPy.
_LAZY = {
    "BaseInfo": "base",
    "check_base": "base",
    "train_available": "base",
    "run_finetune_process": "process",
    "plan_split": "split",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)


__all__ = [
    "BaseInfo",
    "FinetuneOptions",
    "FinetuneResult",
    "SplitPlan",
    "StepReport",
    "check_base",
    "finetune",
    "measure_step",
    "plan_split",
    "run_finetune_process",
    "train_available",
]


def finetune(
    data_path: str | Path,
    base_dir: str | Path,
    out_path: str | Path,
    options: FinetuneOptions,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    **kwargs: Any,
) -> FinetuneResult:
    """See :func:`.train.finetune` (imported on call: it needs torch)."""
    from .train import finetune as run

    return run(data_path, base_dir, out_path, options, progress=progress, cancel=cancel, **kwargs)


def measure_step(
    data_path: str | Path, base_dir: str | Path, options: FinetuneOptions, **kwargs: Any
) -> float:
    """See :func:`.train.measure_step` (imported on call: it needs torch)."""
    from .train import measure_step as run

    return run(data_path, base_dir, options, **kwargs)
