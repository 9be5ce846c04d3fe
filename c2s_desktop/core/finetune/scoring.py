"""Label log-likelihoods with the transformers model (with or without its LoRA), scored as the
engine scores them: the sum of the answer tokens' log-probabilities, argmax = the label."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..progress import CancelToken, check_cancel
from .examples import Example


def label_logprobs(
    model: Any,
    examples: Sequence[Example],
    device: Any,
    pad_id: int,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """cells × labels: log P(answer | prompt) summed over the answer's tokens (natural log)."""
    import torch

    out = np.zeros((len(examples), len(examples[0].sequences) if examples else 0))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i, ex in enumerate(examples):
                check_cancel(cancel)
                width = max(map(len, ex.sequences))
                ids = torch.full((len(ex.sequences), width), pad_id, dtype=torch.long)
                mask = torch.zeros_like(ids)
                for j, seq in enumerate(ex.sequences):
                    ids[j, : len(seq)] = torch.tensor(seq)
                    mask[j, : len(seq)] = 1
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
                logp = torch.log_softmax(logits.float(), dim=-1).cpu()
                for j, (seq, split) in enumerate(zip(ex.sequences, ex.splits, strict=True)):
                    target = torch.tensor(seq[split:])
                    rows = logp[j, split - 1 : len(seq) - 1]
                    out[i, j] = float(rows.gather(1, target[:, None]).sum())
    finally:
        model.train(was_training)
    return out


def accuracy(logprobs: np.ndarray, truth: Sequence[int]) -> float:
    """Fraction of cells whose most likely label is their own."""
    if not len(truth):
        return float("nan")
    return float(np.mean(logprobs.argmax(axis=1) == np.asarray(truth)))
