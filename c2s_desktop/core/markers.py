"""Top genes of a selection versus the rest of the cells (mean difference of log-normalised values).

A quick, honest marker list for the selection panel, not a statistical test: genes are ranked by
the difference of mean ``log1p`` expression; the log2 fold change and the fraction of expressing
cells are reported beside it (as scanpy's ``rank_genes_groups`` would).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dataset import Dataset
from .embedding import CHUNK_ROWS, log_normalized
from .errors import DataError
from .progress import CancelToken, ProgressFn, check_cancel, no_progress


@dataclass(frozen=True)
class MarkerGene:
    """One gene's summary: mean log-normalised value and fraction expressing, in and out."""

    gene: str
    mean_in: float
    mean_out: float
    log2_fc: float
    frac_in: float
    frac_out: float

    @property
    def difference(self) -> float:
        """``mean_in - mean_out`` (the ranking key)."""
        return self.mean_in - self.mean_out


def top_genes(
    dataset: Dataset,
    rows: np.ndarray,
    n_top: int = 20,
    *,
    chunk_rows: int = CHUNK_ROWS,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> list[MarkerGene]:
    """The ``n_top`` genes most higher in the cells ``rows`` than in all other cells."""
    n = dataset.n_cells
    inside = np.zeros(n, dtype=bool)
    inside[np.asarray(rows, dtype=np.int64)] = True
    n_in = int(inside.sum())
    if n_in == 0 or n_in == n:
        raise DataError(
            "top genes need a selection that is neither empty nor every cell",
            hint="select some cells in the embedding (lasso, rectangle or a category)",
        )
    g = dataset.n_genes
    sums, expressing = np.zeros((2, g)), np.zeros((2, g))
    for idx, chunk in dataset.matrix.iter_rows(chunk_rows):
        check_cancel(cancel)
        values = log_normalized(chunk, dataset.source.kind)
        weights = np.stack([inside[idx], ~inside[idx]]).astype(np.float32)
        sums += weights @ values
        values.data = (values.data > 0).astype(np.float32)
        expressing += weights @ values
        progress((idx[-1] + 1) / n, "top genes: reading cells")
    counts = np.array([[n_in], [n - n_in]], dtype=np.float64)
    means, fracs = sums / counts, expressing / counts
    log2_fc = np.log2((np.expm1(means[0]) + 1e-9) / (np.expm1(means[1]) + 1e-9))
    symbols = np.asarray(dataset.symbols.symbols, dtype=object).astype(str)
    diff = np.where(symbols != "", means[0] - means[1], -np.inf)
    best = np.argsort(-diff, kind="stable")[: min(n_top, int(np.sum(symbols != "")))]
    return [
        MarkerGene(
            str(symbols[j]),
            float(means[0, j]),
            float(means[1, j]),
            float(log2_fc[j]),
            float(fracs[0, j]),
            float(fracs[1, j]),
        )
        for j in best
    ]
