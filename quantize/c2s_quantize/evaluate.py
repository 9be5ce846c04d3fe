"""Run verification probes through a language model: token ids, logits and label scores.

The same code drives every backend (llama.cpp in a worker process, transformers in-process),
so reference and candidate are measured identically.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .probes import Probe
from .progress import CancelToken, ProgressFn, Stage, check_cancel


class LanguageModel(Protocol):
    """What verification needs from a model."""

    def tokenize(self, text: str, *, at_start: bool) -> list[int]:
        """Token ids; ``at_start`` adds the model's start-of-text token (BOS) if it uses one."""
        ...

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Raw next-token logits for every position, float32 of shape (len(ids), n_vocab)."""
        ...


@dataclass(frozen=True)
class Tokenized:
    """A probe's prompt ids and the ids of each label continuation."""

    prompt: tuple[int, ...]
    labels: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class ProbeRun:
    """One probe through one model. ``logits_file`` holds the prompt logits (.npy)."""

    name: str
    tokens: Tokenized  # this model's own tokenization
    logits_file: str
    label_logliks: tuple[float, ...]  # log P(label | prompt), natural log


def tokenize_probe(lm: LanguageModel, probe: Probe) -> Tokenized:
    prompt = tuple(lm.tokenize(probe.text, at_start=True))
    labels = tuple(
        tuple(lm.tokenize(probe.continuation(lab), at_start=False)) for lab in probe.labels
    )
    return Tokenized(prompt, labels)


def label_loglik(logits: np.ndarray, prompt_len: int, label: Sequence[int]) -> float:
    """Sum of log-probabilities of ``label`` tokens given the logits of prompt + label."""
    rows = logits[prompt_len - 1 : prompt_len - 1 + len(label)].astype(np.float64)
    rows -= rows.max(axis=1, keepdims=True)
    logp = rows - np.log(np.exp(rows).sum(axis=1, keepdims=True))
    return float(logp[np.arange(len(label)), list(label)].sum())


def run_probes(
    lm: LanguageModel,
    probes: Sequence[Probe],
    out_dir: Path,
    forced: Sequence[Tokenized] | None = None,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> list[ProbeRun]:
    """Tokenize and evaluate each probe; logits are saved as ``out_dir/<i>.npy``.

    With ``forced`` (another model's tokenization) the model is evaluated on those ids, so its
    logits line up with that model's position by position; its own ids are still reported.
    """
    stage, runs = Stage(progress), []
    for i, probe in enumerate(probes):
        check_cancel(cancel)
        stage(f"evaluating {probe.name}", i / len(probes))
        own = tokenize_probe(lm, probe)
        use = forced[i] if forced is not None else own
        logits_file = out_dir / f"{i}.npy"
        np.save(logits_file, lm.logits(use.prompt))
        logliks = tuple(
            label_loglik(lm.logits(use.prompt + lab), len(use.prompt), lab) for lab in use.labels
        )
        runs.append(ProbeRun(probe.name, own, str(logits_file), logliks))
    stage("evaluated", 1.0)
    return runs


def save_runs(runs: Sequence[ProbeRun], path: Path) -> None:
    path.write_text(json.dumps([asdict(r) for r in runs]), encoding="utf-8")


def load_runs(path: Path) -> list[ProbeRun]:
    return [
        ProbeRun(
            r["name"],
            Tokenized(tuple(r["tokens"]["prompt"]), tuple(tuple(x) for x in r["tokens"]["labels"])),
            r["logits_file"],
            tuple(r["label_logliks"]),
        )
        for r in json.loads(path.read_text(encoding="utf-8"))
    ]
