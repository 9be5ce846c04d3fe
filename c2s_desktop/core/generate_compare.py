"""Generated cells beside the real ones: the background jobs of the Generate view.

:func:`compare_with_real` puts generated and real cells of a type on one scale (log10 of
normalised values, as the inverse fit uses); :func:`save_job` writes the cells with provenance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .dataset import Dataset
from .engine.base import Engine
from .export import write_new_h5ad
from .inverse import log10_normalize
from .progress import CancelToken, ProgressFn, check_cancel, no_progress
from .results import TASK_GENERATE, UNS_KEY, ModelRecord, generate_record
from .sentences import to_word_matrix
from .tasks.generate import GenerateOptions, GenerateResult, generate_cells

N_COMPARE = 20
"""Genes in the comparison."""
TYPE_COLUMN_HINTS = ("cell_type", "celltype", "cell type", "annotation", "label", "louvain")
"""Parts of obs column names that hold cell types (the first match is offered)."""


@dataclass(frozen=True)
class Comparison:
    """Mean expression per gene (log10 scale of the inverse transform): generated vs real."""

    genes: list[str]
    generated: np.ndarray
    real: np.ndarray | None
    n_real: int


def real_rows(dataset: Dataset, column: str, cell_type: str) -> np.ndarray:
    """Rows of the dataset whose ``column`` equals ``cell_type`` (as text)."""
    if not column or column not in dataset.obs.columns:
        return np.zeros(0, dtype=np.int64)
    values = dataset.obs[column].astype(str).to_numpy()
    return np.flatnonzero(values == cell_type)


def compare_with_real(
    dataset: Dataset,
    result: GenerateResult,
    rows: np.ndarray,
    n_genes: int = N_COMPARE,
    cancel: CancelToken | None = None,
) -> Comparison:
    """The ``n_genes`` genes highest on average in the generated cells, with the mean of the real
    cells ``rows`` on the same scale (log10 of normalised values, as the inverse fit uses)."""
    X = result.adata.X
    gen_mean = np.asarray(X.mean(axis=0)).ravel()
    order = [int(i) for i in np.argsort(-gen_mean, kind="stable")[:n_genes] if gen_mean[i] > 0]
    genes = [str(result.adata.var_names[i]) for i in order]
    real = None
    if len(rows):
        blocks = []
        for _, chunk in dataset.matrix.iter_rows(4096, np.sort(rows)):
            check_cancel(cancel)
            blocks.append(chunk)
        words = to_word_matrix(sp.vstack(blocks, format="csr"), dataset.vocabulary)
        values = log10_normalize(
            words,
            dataset.source.kind,
            None,
            dataset.log1p_base,
        )
        real = np.asarray(values.mean(axis=0)).ravel()[order]
    return Comparison(genes, gen_mean[order], real, len(rows))


def generate_job(
    dataset: Dataset,
    engine: Engine,
    options: GenerateOptions,
    rows: np.ndarray,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> tuple[GenerateResult, Comparison]:
    """Generate, then compare with the real cells ``rows`` (background job)."""
    result = generate_cells(dataset, engine, options, progress=progress, cancel=cancel)
    return result, compare_with_real(dataset, result, rows, cancel=cancel)


def save_job(
    result: GenerateResult,
    reference: Path,
    options: GenerateOptions,
    model: tuple[str, str],
    path: Path,
    overwrite: bool,
) -> Path:
    """Write the generated cells with their provenance (reference hashed here; atomic)."""
    record = generate_record(reference, result, options, ModelRecord(*model))
    adata = result.adata.copy()
    adata.uns[UNS_KEY] = {TASK_GENERATE: record}
    return write_new_h5ad(adata, path, overwrite=overwrite)
