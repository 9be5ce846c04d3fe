"""C2S embeddings of cells (mean-pooled final hidden state of the cell-type prompt)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..catalog import EMBED
from ..dataset import Dataset
from ..engine.base import Engine
from ..progress import CancelToken, ProgressFn, check_cancel, no_progress
from ..prompts import CELL_TYPE_PREDICTION, prompt_values, template
from ..sentences import cell_sentences
from .common import setup


@dataclass(frozen=True)
class EmbedOptions:
    rows: np.ndarray | None = None
    n_genes: int | None = None
    template_index: int = 0
    batch: int = 16


@dataclass(frozen=True)
class EmbedResult:
    rows: np.ndarray
    embedding: np.ndarray
    layout: np.ndarray
    template_id: str
    warnings: tuple[str, ...] = field(default=())
    options: EmbedOptions | None = None
    """The options it ran with (its provenance)."""


def layout_2d(x: np.ndarray) -> np.ndarray:
    """First two principal components (a deterministic 2-D layout for plotting)."""
    centred = x - x.mean(axis=0)
    if len(x) < 2:
        return np.zeros((len(x), 2), dtype=np.float32)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return (centred @ vt[:2].T).astype(np.float32)


def embed_cells(
    dataset: Dataset,
    engine: Engine,
    options: EmbedOptions = EmbedOptions(),
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> EmbedResult:
    """Embed the selected cells; ``embedding`` is (cells × hidden size)."""
    job = setup(EMBED, engine, dataset, options.rows, options.n_genes)
    tmpl = template(CELL_TYPE_PREDICTION, options.template_index)
    parts = []
    n = len(job.rows)
    for start in range(0, n, options.batch):
        check_cancel(cancel)
        rows = job.rows[start : start + options.batch]
        prompts = [
            tmpl.format(**prompt_values(organism=dataset.organism, n_genes=job.n_genes, sentence=s))
            for s in cell_sentences(dataset, rows, top_k=job.n_genes)
        ]
        parts.append(engine.embed(prompts, cancel=cancel))
        progress(min(n, start + options.batch) / n, f"{min(n, start + options.batch):,}/{n:,}")
    emb = np.vstack(parts).astype(np.float32)
    return EmbedResult(job.rows, emb, layout_2d(emb), tmpl.id, job.warnings, options)
