"""LoRA fine-tuning of C2S checkpoints on a lab's labelled cells.

Importing this package needs no torch: :func:`plan_split`, :func:`train_available` and the
option and report types are light; :func:`finetune`, :func:`measure_step` and
:func:`run_finetune_process` import torch, transformers and peft when called.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .options import FinetuneOptions, FinetuneResult, SplitPlan, StepReport

if TYPE_CHECKING:
    from .base import BaseInfo, check_base, train_available
    from .process import run_finetune_process
    from .split import plan_split
    from .train import finetune, measure_step

# Imported on first use, so ``c2s --help`` (which imports the options) loads no NumPy.
_LAZY = {
    "BaseInfo": "base",
    "check_base": "base",
    "train_available": "base",
    "run_finetune_process": "process",
    "plan_split": "split",
    "finetune": "train",  # torch is imported when these are called
    "measure_step": "train",
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
