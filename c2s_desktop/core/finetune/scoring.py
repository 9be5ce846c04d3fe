"""Label log-likelihoods with the transformers model (with or without its LoRA), scored as the
engine scores them: the sum of the answer tokens' log-probabilities, argmax = the label."""

from __future__ import annotations

import inspect
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
    *,
    cached: bool = True,
) -> np.ndarray:
    """cells × labels: log P(answer | prompt) summed over the answer's tokens (natural log).

    With ``cached`` the prompt is run once and its KV cache shared by every label (the
    engine's way, and as many times faster as there are labels); else each label's whole
    sequence is run on its own (the reference the cached path is tested against)."""
    import torch

    out = np.zeros((len(examples), len(examples[0].sequences) if examples else 0))
    was_training = model.training
    model.eval()
    score = _score_cached if cached else _score_whole
    try:
        with torch.no_grad():
            for i, ex in enumerate(examples):
                check_cancel(cancel)
                out[i] = score(model, ex, device, pad_id)
    finally:
        model.train(was_training)
    return out


def _padded(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    import torch

    width = max(1, max(map(len, seqs)))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for j, seq in enumerate(seqs):
        ids[j, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[j, : len(seq)] = 1
    return ids, mask


def _score_whole(model: Any, ex: Example, device: Any, pad_id: int) -> list[float]:
    import torch

    ids, mask = _padded(ex.sequences, pad_id)
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
    logp = torch.log_softmax(logits.float(), dim=-1).cpu()
    scores = []
    for j, (seq, split) in enumerate(zip(ex.sequences, ex.splits, strict=True)):
        target = torch.tensor(seq[split:], dtype=torch.long)
        scores.append(float(logp[j, split - 1 : len(seq) - 1].gather(1, target[:, None]).sum()))
    return scores


def _score_cached(model: Any, ex: Example, device: Any, pad_id: int) -> list[float]:
    """The prompt tokens every label shares, once; then all labels' remaining tokens as one
    batch on copies of its KV cache."""
    import torch

    ctx = min(ex.splits)
    head = torch.tensor([ex.sequences[0][:ctx]], dtype=torch.long, device=device)
    first = model(input_ids=head, use_cache=True)
    key = _cache_argument(model)
    cache = getattr(first, key, None) or first.past_key_values
    last = torch.log_softmax(first.logits[0, -1].float(), dim=-1).cpu()
    rests = [seq[ctx:] for seq in ex.sequences]
    n = len(rests)
    cache.batch_repeat_interleave(n)
    ids, mask = _padded(rests, pad_id)
    full_mask = torch.cat([torch.ones((n, ctx), dtype=torch.long), mask], dim=1)
    logits = model(
        input_ids=ids.to(device), attention_mask=full_mask.to(device), **{key: cache}
    ).logits
    logp = torch.log_softmax(logits.float(), dim=-1).cpu()
    scores = []
    for j, (seq, split) in enumerate(zip(ex.sequences, ex.splits, strict=True)):
        total = 0.0
        for p in range(split, len(seq)):  # token p is predicted by position p - 1
            row = last if p - 1 < ctx else logp[j, p - 1 - ctx]
            total += float(row[seq[p]])
        scores.append(total)
    return scores


def accuracy(logprobs: np.ndarray, truth: Sequence[int]) -> float:
    """Fraction of cells whose most likely label is their own."""
    if not len(truth):
        return float("nan")
    return float(np.mean(logprobs.argmax(axis=1) == np.asarray(truth)))


def _cache_argument(model: Any) -> str:
    """``cache`` (transformers >= 5.24) or ``past_key_values`` (before)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
