"""The original checkpoint through transformers, as a reference LanguageModel (optional).

torch and transformers are imported lazily: they are never runtime dependencies.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def transformers_available() -> bool:
    """True when torch and transformers can be imported."""
    try:
        return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))
    except (ImportError, ValueError):  # e.g. a module blocked by setting sys.modules[m] = None
        return False


class TransformersLM:
    """A checkpoint folder loaded in float32 with eager attention (exact soft-capping)."""

    def __init__(self, folder: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=torch.float32, attn_implementation="eager"
        ).eval()

    def tokenize(self, text: str, *, at_start: bool) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=at_start)["input_ids"])

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        with self.torch.no_grad():
            out = self.model(self.torch.tensor([list(ids)]))
        return out.logits[0].float().numpy()
