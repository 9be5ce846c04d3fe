"""Small helpers shared by test modules (and the benchmarks that repeat their checks).

Each returns what it observed; the assertions stay in the tests.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def run_cli(*args: object) -> tuple[int, str, str]:
    """``c2s ARGS`` in this process; (exit code, stdout, stderr)."""
    from c2s_desktop.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, stdout.getvalue(), stderr.getvalue()


def annotation_record(path: Path) -> tuple[dict, object]:
    """An annotated file's provenance without its timing, and its obs table."""
    import anndata as ad

    adata = ad.read_h5ad(path)
    rec = json.loads(json.dumps(dict(adata.uns["c2s"]["annotate"]), default=str))
    for key in ("time", "seconds_per_scored_cell"):
        rec.pop(key, None)
    return rec, adata.obs


def tokens_logprob(model: Any, ids: Sequence[int], split: int) -> float:
    """log P(ids[split:] | ids[:split]) with a transformers causal LM (float64 log-softmax)."""
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([list(ids)])).logits[0].double()
    logp = torch.log_softmax(logits[split - 1 : -1], dim=-1)
    return float(logp[torch.arange(len(ids) - split), torch.tensor(ids[split:])].sum())


def transformers_logprob(tok: Any, model: Any, prefix: str, cont: str) -> float:
    """log P(cont | prefix) with transformers, split where the joint tokens leave the prompt's
    (as the engine does)."""
    full, head = tok(prefix + cont)["input_ids"], tok(prefix)["input_ids"]
    split = next((i for i, (a, b) in enumerate(zip(full, head, strict=False)) if a != b), len(head))
    return tokens_logprob(model, full, split)


def cancel_at_first_token(engine: Any, prompt: str, max_tokens: int) -> tuple[Any, float]:
    """A sampled generation cancelled from its first token: (the result, seconds from the
    cancel to the return; infinite when no token came)."""
    from c2s_desktop.core.engine.base import GenerateParams

    cancel = threading.Event()
    cancelled_at: list[float] = []

    def on_token(_: str) -> None:
        if not cancel.is_set():
            cancel.set()
            cancelled_at.append(time.perf_counter())

    params = GenerateParams(max_tokens=max_tokens, temperature=1.0, seed=1)
    got = engine.generate(prompt, params, on_token=on_token, cancel=cancel)
    return got, time.perf_counter() - cancelled_at[0] if cancelled_at else float("inf")
