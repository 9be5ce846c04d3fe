"""Cell sentences for a whole dataset: chunked, on both cores, streamed to an atomic CSV.

Reading happens on the calling thread (h5py is not parallel); ranking and text assembly of
chunks run on a small thread pool (NumPy sorts and gathers release the GIL). Memory stays bounded
by the chunk size times the number of chunks in flight, whatever the file size.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .csv_table import csv_field
from .dataset import Dataset
from .errors import DataError
from .progress import CancelToken, ProgressFn, check_cancel, no_progress
from .sentences import (
    InvalidValues,
    RankedChunk,
    SentenceEncoder,
    needs_csv_quotes,
    rank_words,
    to_word_matrix,
)

TARGET_CHUNK_NNZ = 1_500_000


@dataclass(frozen=True)
class SentenceStats:
    """What a sentence run produced."""

    n_cells: int
    n_empty_cells: int
    n_words: int
    seconds: float
    output: str = ""


@functools.cache
def tune_allocator() -> None:
    """Keep large freed buffers in the process (glibc) instead of returning them to the OS.

    Every chunk allocates arrays of tens of MB; by default glibc maps and unmaps each one, and
    the page faults of touching fresh pages cost more than the ranking itself. Peak memory is
    unchanged (the same buffers are reused).
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 512 * 1024**2)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1024 * 1024**2)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def default_threads() -> int:
    """Worker threads for ranking: the usable cores, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def chunk_rows_for(dataset: Dataset) -> int:
    """Rows per chunk so a chunk holds about ``TARGET_CHUNK_NNZ`` stored values."""
    lay = dataset.matrix.layout
    per_row = max(1.0, lay.nnz / max(1, lay.shape[0]))
    return int(np.clip(TARGET_CHUNK_NNZ / per_row, 32, 16384))


def iter_ranked(
    dataset: Dataset,
    top_k: int | None = None,
    *,
    rows: np.ndarray | None = None,
    threads: int | None = None,
    cancel: CancelToken | None = None,
    encode: _LineMaker | None = None,
) -> Iterator[tuple[np.ndarray, RankedChunk, bytes]]:
    """Yield ``(row_indices, ranked, lines)`` chunk by chunk, in row order.

    ``lines`` is the output of ``encode`` for the chunk (``b""`` without one). Raises
    :class:`DataError` (naming the file, source and cell) on NaN/inf/negative values.
    """
    vocab = dataset.vocabulary
    n_threads = threads or default_threads()
    tune_allocator()

    def work(idx: np.ndarray, chunk) -> tuple[np.ndarray, RankedChunk, bytes]:  # noqa: ANN001
        try:
            ranked = rank_words(to_word_matrix(chunk, vocab), top_k)
        except InvalidValues as exc:
            cell = dataset.cell_ids[idx[exc.row]]
            raise DataError(
                f"{dataset.source.name} contains {exc.what} (first in cell '{cell}')",
                path=dataset.path,
                hint="cell sentences need non-negative, finite values; choose another source "
                "with --source",
            ) from None
        return idx, ranked, encode(idx, ranked) if encode else b""

    chunks = dataset.matrix.iter_rows(chunk_rows_for(dataset), rows)
    with ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="c2s-rank") as pool:
        pending: deque[Future] = deque()
        try:
            for idx, chunk in chunks:
                check_cancel(cancel)
                pending.append(pool.submit(work, idx, chunk))
                while len(pending) > n_threads:
                    yield pending.popleft().result()
            while pending:
                check_cancel(cancel)
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()


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
    missing = [c for c in obs_columns if c not in dataset.obs.columns]
    if missing:
        raise DataError(
            f"no obs column {', '.join(repr(m) for m in missing)}",
            path=dataset.path,
            hint=f"available: {', '.join(map(str, dataset.obs.columns)) or 'none'}",
        )
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


def cell_sentences(
    dataset: Dataset, rows: np.ndarray | None = None, top_k: int | None = None
) -> list[str]:
    """Sentences of the given cells (all when ``rows`` is None) as strings, in row order."""
    encoder = SentenceEncoder(dataset.vocabulary.words)
    order = None
    if rows is not None:
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        rows = rows[order]
    out: list[str] = []
    for _, ranked, _ in iter_ranked(dataset, top_k, rows=rows):
        out.extend(encoder.sentences(ranked))
    if order is None:
        return out
    result = [""] * len(out)
    for pos, i in enumerate(order):
        result[i] = out[pos]
    return result
