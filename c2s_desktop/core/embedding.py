"""Expression values for display: log-normalisation, one gene's values, PCA when obsm has none.

Everything reads the dataset's chosen source in row chunks (:meth:`H5Matrix.iter_rows`), so
memory stays bounded for backed files; every long call takes ``progress`` and ``cancel``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .dataset import KIND_LOGNORM, Dataset
from .errors import DataError
from .progress import CancelToken, ProgressFn, check_cancel, no_progress

TARGET_SUM = 1e4
"""Counts are scaled to this total per cell before ``log1p`` (as scanpy's normalize_total)."""
CHUNK_ROWS = 20_000
PCA_KEY = "PCA (computed)"
"""Name under which the GUI shows a PCA computed by :func:`compute_pca`."""


def log_normalized(chunk: sp.csr_matrix, kind: str) -> sp.csr_matrix:
    """``log1p(x / cell total * 1e4)`` as float32 CSR; log-normalised input is returned as is."""
    out = sp.csr_matrix(chunk, dtype=np.float32, copy=True)
    if kind == KIND_LOGNORM:
        return out
    totals = np.asarray(out.sum(axis=1), dtype=np.float32).ravel()
    scale = np.divide(TARGET_SUM, totals, out=np.zeros_like(totals), where=totals > 0)
    out.data *= np.repeat(scale, np.diff(out.indptr))
    np.log1p(out.data, out=out.data)
    return out


def gene_names(dataset: Dataset) -> list[str]:
    """The dataset's gene symbols (unique, sorted, case-insensitively) for search completion."""
    names = {str(s) for s in dataset.symbols.symbols if str(s)}
    return sorted(names, key=str.upper)


def gene_column(dataset: Dataset, gene: str) -> int:
    """Column of ``gene`` (exact symbol, else case-insensitive); :class:`DataError` if none."""
    symbols = np.asarray(dataset.symbols.symbols, dtype=object).astype(str)
    hits = np.flatnonzero(symbols == gene)
    if not len(hits):
        hits = np.flatnonzero(np.char.upper(symbols) == gene.strip().upper())
    if not len(hits):
        raise DataError(
            f"no gene '{gene}' in the dataset",
            path=dataset.path,
            hint=f"gene symbols come from {dataset.symbols.source}; pick one from the list",
        )
    return int(hits[0])


def gene_expression(
    dataset: Dataset,
    gene: str,
    *,
    chunk_rows: int = CHUNK_ROWS,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """Log-normalised values of ``gene`` for every cell (float32, length ``n_cells``)."""
    col = gene_column(dataset, gene)
    out = np.zeros(dataset.n_cells, dtype=np.float32)
    for idx, chunk in dataset.matrix.iter_rows(chunk_rows):
        check_cancel(cancel)
        out[idx] = log_normalized(chunk, dataset.source.kind)[:, col].toarray().ravel()
        progress((idx[-1] + 1) / dataset.n_cells, f"reading {gene}")
    return out


def compute_pca(
    dataset: Dataset,
    n_components: int = 30,
    *,
    max_cells: int = 50_000,
    n_top_genes: int = 2000,
    seed: int = 0,
    chunk_rows: int = CHUNK_ROWS,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """PCA scores (cells × ``n_components``, float32) of log-normalised values.

    The axes are fitted by randomized SVD on at most ``max_cells`` random cells and the
    ``n_top_genes`` most variable genes among them; every cell is then projected chunk by chunk.
    """
    n = dataset.n_cells
    rng = np.random.default_rng(seed)
    rows = np.arange(n) if n <= max_cells else np.sort(rng.choice(n, max_cells, replace=False))
    kind = dataset.source.kind
    parts = []
    for idx, chunk in dataset.matrix.iter_rows(chunk_rows, rows):
        check_cancel(cancel)
        parts.append(log_normalized(chunk, kind))
        progress(0.4 * (idx[-1] + 1) / n, "PCA: reading a sample of cells")
    sample = sp.vstack(parts, format="csr")
    check_cancel(cancel)
    mean = np.asarray(sample.mean(axis=0)).ravel()
    var = np.asarray(sample.multiply(sample).mean(axis=0)).ravel() - mean**2
    genes = np.sort(np.argsort(var)[::-1][: min(n_top_genes, len(var))])
    k = max(1, min(n_components, len(rows) - 1, len(genes) - 1))
    check_cancel(cancel)
    progress(0.45, "PCA: fitting axes")
    axes = randomized_pca(sample[:, genes], mean[genes], k, rng, cancel=cancel)
    check_cancel(cancel)
    if len(rows) == n:
        return _project(sample[:, genes], mean[genes], axes)
    out = np.empty((n, k), dtype=np.float32)
    for idx, chunk in dataset.matrix.iter_rows(chunk_rows):
        check_cancel(cancel)
        out[idx] = _project(log_normalized(chunk, kind)[:, genes], mean[genes], axes)
        progress(0.6 + 0.4 * (idx[-1] + 1) / n, "PCA: projecting cells")
    return out


def randomized_pca(
    x: sp.csr_matrix,
    mean: np.ndarray,
    k: int,
    rng: np.random.Generator,
    n_iter: int = 5,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """Top ``k`` principal axes (k × genes) of ``x`` centred by ``mean``, without densifying.

    Halko et al.'s randomized range finder with power iterations; the centring is applied
    implicitly. Signs are fixed so that each axis's largest loading is positive. ``cancel`` is
    checked between the products (each takes a fraction of a second on 50,000 cells).
    """
    n, g = x.shape
    p = min(g, k + 10)

    def times(m: np.ndarray) -> np.ndarray:  # (x - mean) @ m
        return x @ m - np.outer(np.ones(n), mean @ m)

    def times_t(m: np.ndarray) -> np.ndarray:  # (x - mean).T @ m
        return x.T @ m - np.outer(mean, m.sum(axis=0))

    q, _ = np.linalg.qr(times(rng.standard_normal((g, p))))
    for _ in range(n_iter):
        check_cancel(cancel)
        z, _ = np.linalg.qr(times_t(q))
        check_cancel(cancel)
        q, _ = np.linalg.qr(times(z))
    check_cancel(cancel)
    _, _, vt = np.linalg.svd(times_t(q).T, full_matrices=False)
    axes = vt[:k]
    signs = np.sign(axes[np.arange(k), np.argmax(np.abs(axes), axis=1)])
    return axes * np.where(signs == 0, 1, signs)[:, None]


def _project(x: sp.csr_matrix, mean: np.ndarray, axes: np.ndarray) -> np.ndarray:
    return np.asarray(x @ axes.T - mean @ axes.T, dtype=np.float32)
