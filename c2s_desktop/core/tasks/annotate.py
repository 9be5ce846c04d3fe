"""Cell-type annotation by label log-likelihood, per cell or through representative cells.

Each candidate label is scored as the continuation ``" <label>."`` of the C2S cell-type prompt;
probabilities are the softmax of the log-likelihoods over the candidates. Candidates come from
the user, from an obs column, or from the model's own greedy answers on a sample of cells.

Representative mode (default for large selections): ``per_cluster`` cells closest to each
cluster centre (clusters from an obs key, the Leiden clusters of a prepared file, or k-means on
expression PCA) are scored; every other
cell takes the probability-weighted vote of its nearest scored cells in PCA space.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from scipy.cluster.vq import kmeans2
from scipy.spatial import cKDTree

from ..audit import file_sha256
from ..catalog import ANNOTATE
from ..checkpoints import Checkpoint, digest, run_key
from ..dataset import Dataset
from ..embedding import compute_pca
from ..engine.base import Engine, GenerateParams, Score
from ..errors import DataError
from ..preprocess import CLUSTER_KEY
from ..progress import CancelToken, ProgressFn, check_cancel, duration_text, no_progress
from ..prompts import (
    CELL_TYPE_PREDICTION,
    clean_label,
    label_continuation,
    prompt_values,
    template,
)
from ..sentences import cell_sentences
from .common import CellPromptFitter, context_size, setup

MODE_AUTO = "auto"
MODE_PER_CELL = "per-cell"
MODE_REPRESENTATIVE = "representative"
CLUSTERS_KMEANS = "k-means"
"""``cluster_key`` value that asks for k-means even when the file has Leiden clusters."""
SCORING_EXACT = "exact log-likelihood"
SCORING_APPROXIMATE = "approximate (greedy answer matched to a candidate)"
_DISCOVER_TOKENS = 32
"""Longest greedy answer when the model proposes the candidate labels itself."""


@dataclass(frozen=True)
class AnnotateOptions:
    """Choices for :func:`annotate` (all optional)."""

    candidates: tuple[str, ...] = ()
    candidates_from: str | None = None
    mode: str = MODE_AUTO
    cluster_key: str | None = None
    """obs column of clusters; None: ``leiden`` when the file has it, else k-means."""
    per_cluster: int = 5
    n_neighbors: int = 10
    n_genes: int | None = None
    template_index: int = 0
    rows: np.ndarray | None = None
    discover_cells: int = 16
    auto_threshold: int = 2000
    seed: int = 0


@dataclass(frozen=True)
class AnnotateResult:
    """Labels for the selected cells (``rows``), with probabilities and how they were obtained."""

    rows: np.ndarray
    labels: np.ndarray
    probability: np.ndarray
    candidates: tuple[str, ...]
    mode: str
    scored_rows: np.ndarray
    scored_probs: np.ndarray
    clusters: np.ndarray | None
    cluster_agreement: dict[str, float]
    template_id: str
    n_genes: int
    seconds_per_scored_cell: float
    warnings: tuple[str, ...] = field(default=())
    cluster_source: str = ""
    """Where representative mode's clusters came from: ``obs['leiden']``, ``k-means (k=12)``."""
    options: AnnotateOptions | None = None
    """The options it ran with (its provenance, see :mod:`~c2s_desktop.core.results`)."""
    scoring: str = ""
    """``exact log-likelihood`` or ``approximate (greedy answer matched to a candidate)``."""
    resumed_cells: int = 0
    """Scored cells read back from an interrupted run's checkpoint."""

    def finished(self, checkpoint: Checkpoint) -> AnnotateResult:
        """This result, once complete: the run's checkpoint is removed."""
        checkpoint.finish()
        return self

    def counts(self) -> dict[str, int]:
        """Cells per label, most frequent first."""
        values, counts = np.unique(self.labels.astype(str), return_counts=True)
        order = np.argsort(-counts)
        return {str(values[i]): int(counts[i]) for i in order}


def annotate(
    dataset: Dataset,
    engine: Engine,
    options: AnnotateOptions = AnnotateOptions(),
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> AnnotateResult:
    """Annotate the selected cells; see the module docstring."""
    job = setup(ANNOTATE, engine, dataset, options.rows, options.n_genes)
    tmpl = template(CELL_TYPE_PREDICTION, options.template_index)
    mode = resolved_mode(options, len(job.rows))

    def build(sentence: str, n_genes: int) -> str:
        values = prompt_values(organism=dataset.organism, n_genes=n_genes, sentence=sentence)
        return tmpl.format(**values)

    clusters = coords = None
    cluster_source = ""
    scored = job.rows
    if mode == MODE_REPRESENTATIVE:
        progress(0.0, "finding representative cells")
        clusters, coords, cluster_source = _clusters(dataset, job.rows, options, progress, cancel)
        scored = _representatives(clusters, coords, options.per_cluster, job.rows)
    discover = CellPromptFitter(engine, build, job.n_genes, reserve=_DISCOVER_TOKENS + 1)
    candidates = _candidates(dataset, engine, options, scored, discover, cancel)
    sentences = cell_sentences(dataset, scored, top_k=job.n_genes)
    continuations = [label_continuation(c) for c in candidates]
    longest = max(len(engine.tokenize(c)) for c in continuations)
    prompt_for = CellPromptFitter(engine, build, job.n_genes, reserve=longest + 1)
    probs = np.zeros((len(scored), len(candidates)), dtype=np.float64)
    warnings = job.warnings + tuple(filter(None, [discover.warning()]))
    key = resume_key(dataset, engine, scored, sentences, continuations, tmpl.id, options)
    with Checkpoint("annotate", key, len(scored), len(candidates)) as checkpoint:
        per_cell, score_warning = _score_cells(
            engine, prompt_for, sentences, continuations, probs, checkpoint, progress, cancel
        )
    warnings += tuple(filter(None, [score_warning]))
    scoring = SCORING_APPROXIMATE if score_warning else SCORING_EXACT
    warnings += tuple(filter(None, [prompt_for.warning()]))
    if mode == MODE_PER_CELL:
        labels = np.array([candidates[j] for j in probs.argmax(axis=1)], dtype=object)
        return AnnotateResult(
            job.rows,
            labels,
            probs.max(axis=1).astype(np.float32),
            candidates,
            mode,
            scored,
            probs,
            None,
            {},
            tmpl.id,
            job.n_genes,
            per_cell,
            warnings,
            options=options,
            scoring=scoring,
            resumed_cells=checkpoint.resumed,
        ).finished(checkpoint)
    labels, conf = _propagate(coords, job.rows, scored, probs, candidates, options.n_neighbors)
    agreement = _agreement(clusters, job.rows, scored, probs, candidates)
    return AnnotateResult(
        job.rows,
        labels,
        conf,
        candidates,
        mode,
        scored,
        probs,
        clusters,
        agreement,
        tmpl.id,
        job.n_genes,
        per_cell,
        warnings,
        cluster_source,
        options,
        scoring=scoring,
        resumed_cells=checkpoint.resumed,
    ).finished(checkpoint)


def _score_cells(
    engine: Engine,
    prompt_for: CellPromptFitter,
    sentences: Sequence[str],
    continuations: Sequence[str],
    probs: np.ndarray,
    checkpoint: Checkpoint,
    progress: ProgressFn,
    cancel: CancelToken | None,
) -> tuple[float, str]:
    """Fill ``probs`` (cells × candidates) from the checkpoint and by scoring the remaining
    cells (several in flight on a :class:`BatchScorer`); each new cell is checkpointed.
    Returns seconds per newly scored cell and the engine's scoring warning."""
    n = len(sentences)
    for i, values in checkpoint.done.items():
        probs[i] = values
    n_done = checkpoint.resumed
    if n_done:
        progress(n_done / n, f"resuming: {n_done:,} of {n:,} cells already scored")
    t0 = time.perf_counter()

    def scored_cell(i: int, scores: Sequence[Score]) -> None:
        nonlocal n_done
        n_done += 1
        probs[i] = _softmax(np.array([s.logprob for s in scores]))
        checkpoint.add(i, probs[i])
        per_cell = (time.perf_counter() - t0) / (n_done - checkpoint.resumed)
        left = per_cell * (n - n_done)
        progress(
            n_done / n,
            f"{n_done:,}/{n:,} cells scored, {1 / per_cell:.2f} cells/s, "
            f"{duration_text(left)} left",
        )

    # every prompt is built, in order, so context warnings equal an uninterrupted run's
    prompts = [(i, prompt_for(s)) for i, s in enumerate(sentences)]
    todo = [(i, p) for i, p in prompts if i not in checkpoint.done]
    warning = checkpoint.meta.get("score_warning", "")
    if isinstance(engine, BatchScorer):  # e.g. a server: several cells in flight at once
        if todo:
            index = [i for i, _ in todo]

            def batch_result(k: int, scores: list[Score]) -> None:
                scored_cell(index[k], scores)
                if k == 0 or not checkpoint.meta:  # the probe's outcome, for a resumed run
                    checkpoint.note(score_warning=engine.score_warning)

            engine.score_many([p for _, p in todo], continuations, batch_result, cancel=cancel)
            warning = engine.score_warning
    else:
        for i, prompt in todo:
            check_cancel(cancel)
            scored_cell(i, engine.score(prompt, continuations, cancel=cancel))
    return (time.perf_counter() - t0) / max(1, len(todo)), warning


def resume_key(
    dataset: Dataset,
    engine: Engine,
    scored: np.ndarray,
    sentences: Sequence[str],
    continuations: Sequence[str],
    template_id: str,
    options: AnnotateOptions,
) -> str:
    """The checkpoint key of an annotation: its input file, selected cells (their rows and
    sentences), model (file or server and name) and scoring options."""
    info = engine.info
    path = Path(str(info.path))
    model_hash = file_sha256(path) if path.is_file() else ""
    return run_key(
        {
            "input": file_sha256(dataset.path) if dataset.path else "",
            "cells": digest(np.asarray(scored, dtype=np.int64).tobytes()),
            "sentences": digest(sentences),
            "model": [str(info.path), info.name, info.file_type, model_hash],
            "options": {
                "continuations": list(continuations),
                "template": template_id,
                "organism": dataset.organism,
                "context": context_size(engine),
                "scoring": str(getattr(engine, "scoring_option", "")),
                "mode": options.mode,
            },
        }
    )


@runtime_checkable
class BatchScorer(Protocol):
    """An engine that scores many prompts with requests in flight at once (a server)."""

    @property
    def score_warning(self) -> str:
        """Why scores are approximate ('' when they are exact log-likelihoods)."""
        ...

    def score_many(
        self,
        prefixes: Sequence[str],
        continuations: Sequence[str],
        on_result: Callable[[int, list[Score]], None],
        cancel: CancelToken | None = None,
    ) -> None:
        """``on_result(i, scores)`` for each prefix as it finishes (any order)."""
        ...


def resolved_mode(options: AnnotateOptions, n_rows: int) -> str:
    """``per-cell`` or ``representative`` for ``n_rows`` selected cells (``auto`` resolved)."""
    mode = options.mode
    if mode == MODE_AUTO:
        mode = MODE_REPRESENTATIVE if n_rows > options.auto_threshold else MODE_PER_CELL
    if mode not in (MODE_PER_CELL, MODE_REPRESENTATIVE):
        raise DataError(f"unknown annotation mode '{mode}'", hint="per-cell or representative")
    return mode


def cluster_column(dataset: Dataset, options: AnnotateOptions) -> str | None:
    """The obs column whose clusters representative mode uses, or None for k-means."""
    key = options.cluster_key
    if key == CLUSTERS_KMEANS:
        return None
    if key is None:
        return CLUSTER_KEY if CLUSTER_KEY in dataset.obs.columns else None
    if key not in dataset.obs.columns:
        raise DataError(
            f"no obs column '{key}'",
            path=dataset.path,
            hint=f"available: {', '.join(map(str, dataset.obs.columns))}",
        )
    return key


def kmeans_clusters(n_rows: int) -> int:
    """k of the k-means fallback: enough to separate the usual 10-20 cell types, at most 40."""
    return int(np.clip(round(np.sqrt(n_rows / 5)), min(8, n_rows), 40))


def scored_cell_count(dataset: Dataset, options: AnnotateOptions) -> int:
    """How many cells :func:`annotate` will score with ``options`` (for time estimates)."""
    rows = np.arange(dataset.n_cells) if options.rows is None else np.asarray(options.rows)
    if resolved_mode(options, len(rows)) == MODE_PER_CELL:
        return len(rows)
    column = cluster_column(dataset, options)
    if column is None:
        return min(len(rows), kmeans_clusters(len(rows)) * options.per_cluster)
    _, sizes = np.unique(dataset.obs[column].astype(str).to_numpy()[rows], return_counts=True)
    return int(np.minimum(sizes, options.per_cluster).sum())


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max())
    return z / z.sum()


def estimate_text(n_cells: int, seconds_per_cell: float) -> str:
    """Human estimate, e.g. ``'100,000 cells × 4.2 s ≈ 4.9 days'``."""
    total = duration_text(n_cells * seconds_per_cell)
    return f"{n_cells:,} cells × {seconds_per_cell:.2g} s ≈ {total}"


def _candidates(dataset, engine, options, sample_rows, prompt_for, cancel):  # noqa: ANN001, ANN202
    if options.candidates:
        labels = [c.strip() for c in options.candidates if c.strip()]
    elif options.candidates_from:
        col = options.candidates_from
        if col not in dataset.obs.columns:
            raise DataError(
                f"no obs column '{col}'",
                path=dataset.path,
                hint=f"available: {', '.join(map(str, dataset.obs.columns))}",
            )
        labels = [str(v) for v in dataset.obs[col].dropna().astype(str).unique()]
    else:  # the model's own greedy answers on a sample of the cells
        rng = np.random.default_rng(options.seed)
        pick = np.sort(
            rng.choice(sample_rows, min(options.discover_cells, len(sample_rows)), replace=False)
        )
        params = GenerateParams(max_tokens=_DISCOVER_TOKENS, temperature=0.0, stop=("\n",))
        labels = []
        for sentence in cell_sentences(dataset, pick, top_k=None):
            check_cancel(cancel)
            answer = clean_label(engine.generate(prompt_for(sentence), params).text)
            if answer:
                labels.append(answer)
    unique = tuple(dict.fromkeys(labels))
    if len(unique) < 1:
        raise DataError("no candidate cell types", hint="give candidates (a file or an obs column)")
    return unique


def _clusters(dataset, rows, options, progress, cancel):  # noqa: ANN001, ANN202
    coords = compute_pca(dataset, 20, progress=lambda f, m: progress(0.5 * f, m), cancel=cancel)[
        rows
    ]
    column = cluster_column(dataset, options)
    if column is not None:
        return dataset.obs[column].astype(str).to_numpy()[rows], coords, f"obs['{column}']"
    k = kmeans_clusters(len(rows))
    rng = np.random.default_rng(options.seed)
    _, assignment = kmeans2(coords.astype(np.float64), k, minit="++", seed=rng)
    labels = np.array([f"cluster {a}" for a in assignment], dtype=object)
    return labels, coords, f"k-means on expression PCA (k={k})"


def _representatives(clusters, coords, per_cluster, rows):  # noqa: ANN001, ANN202
    chosen = []
    for name in np.unique(clusters):
        members = np.flatnonzero(clusters == name)
        centre = coords[members].mean(axis=0)
        nearest = np.argsort(np.linalg.norm(coords[members] - centre, axis=1))[:per_cluster]
        chosen.extend(members[nearest])
    return rows[np.sort(np.array(chosen, dtype=np.int64))]


def _propagate(coords, rows, scored, probs, candidates, n_neighbors):  # noqa: ANN001, ANN202
    position = {int(r): i for i, r in enumerate(rows)}
    scored_xy = coords[[position[int(r)] for r in scored]]
    k = min(n_neighbors, len(scored))
    dist, idx = cKDTree(scored_xy).query(coords, k=k)
    dist, idx = dist.reshape(len(rows), k), idx.reshape(len(rows), k)
    weights = 1.0 / (dist + 1e-6)
    mixed = np.einsum("nk,nkc->nc", weights, probs[idx]) / weights.sum(axis=1, keepdims=True)
    labels = np.array([candidates[j] for j in mixed.argmax(axis=1)], dtype=object)
    return labels, mixed.max(axis=1).astype(np.float32)


def _agreement(clusters, rows, scored, probs, candidates):  # noqa: ANN001, ANN202
    position = {int(r): i for i, r in enumerate(rows)}
    rep_cluster = np.array([clusters[position[int(r)]] for r in scored])
    rep_label = probs.argmax(axis=1)
    out = {}
    for name in np.unique(rep_cluster):
        labels = rep_label[rep_cluster == name]
        out[str(name)] = float(np.bincount(labels).max() / len(labels))
    return out
