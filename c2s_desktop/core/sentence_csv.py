"""The cell-sentence CSV: ``cell_id,cell_sentence[,obs...]`` streamed to an atomic file.

The sentences come from :func:`.sentences.iter_ranked`; this module only frames and writes them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .csv_table import csv_field, needs_csv_quotes
from .dataset import Dataset
from .errors import DataError
from .progress import CancelToken, ProgressFn, no_progress
from .sentences import RankedChunk, SentenceEncoder, iter_ranked


@dataclass(frozen=True)
class SentenceStats:
    """What a sentence run produced."""

    n_cells: int
    n_empty_cells: int
    n_words: int
    seconds: float
    output: str = ""


class _LineMaker:
    """Builds CSV lines ``cell_id,sentence[,obs...]`` for a chunk."""

    def __init__(self, dataset: Dataset, obs_columns: Sequence[str]) -> None:
        words = dataset.vocabulary.words
        quote = '"' if needs_csv_quotes(words) else ""
        ids = dataset.cell_ids
        if needs_csv_quotes(ids):
            prefixes = [(csv_field(c) + "," + quote).encode() for c in ids]
        else:  # the common case: no quoting needed, one vectorised string operation
            prefixes = list(np.char.encode(np.char.add(ids.astype(str), "," + quote), "utf-8"))
        tails = [quote] * dataset.n_cells
        for name in obs_columns:
            col = dataset.obs[name]
            values = col.astype(object).where(col.notna(), "").astype(str)
            tails = [t + "," + csv_field(v) for t, v in zip(tails, values, strict=True)]
        suffixes = [(t + "\n").encode() for t in tails]
        self.encoder = SentenceEncoder(words, True, prefixes, suffixes)

    def __call__(self, idx: np.ndarray, ranked: RankedChunk) -> bytes:
        return self.encoder.lines(ranked, idx)


def write_sentences_csv(
    dataset: Dataset,
    out: str | Path,
    *,
    top_k: int | None = None,
    obs_columns: Sequence[str] = (),
    threads: int | None = None,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> SentenceStats:
    """Write ``cell_id,cell_sentence[,obs...]`` for every cell to ``out`` atomically."""
    dataset.require_obs(obs_columns)
    if top_k is not None and top_k < 1:
        raise DataError("--top-k must be at least 1", path=dataset.path)
    t0 = time.perf_counter()
    maker = _LineMaker(dataset, obs_columns)
    header = ["cell_id", "cell_sentence", *obs_columns]
    n_done = n_empty = n_words = 0
    progress(0.0, "building cell sentences")
    with atomic_write(out) as fh:
        fh.write((",".join(csv_field(h) for h in header) + "\n").encode())
        for idx, ranked, lines in iter_ranked(
            dataset, top_k, threads=threads, cancel=cancel, encode=maker
        ):
            fh.write(lines)
            n_done += len(idx)
            n_empty += int(np.sum(ranked.counts == 0))
            n_words += int(ranked.counts.sum())
            progress(n_done / dataset.n_cells, f"{n_done:,} / {dataset.n_cells:,} cells")
    return SentenceStats(n_done, n_empty, n_words, time.perf_counter() - t0, str(out))
