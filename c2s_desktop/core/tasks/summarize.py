"""Plain-language summary of a selection, next to its top marker genes.

The prompt is the C2S multi-cell natural-language interpretation template over a few cells of
the selection (a seeded random sample, so the same selection gives the same prompt); markers are
a simple selection-vs-rest comparison from the core.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..catalog import SUMMARIZE
from ..dataset import Dataset
from ..engine.base import Engine, GenerateParams, TokenCallback
from ..markers import MarkerGene, top_genes
from ..progress import CancelToken, ProgressFn, no_progress
from ..prompts import NL_INTERPRETATION, prompt_values, template
from ..sentences import cell_sentences
from .common import fit_prompt, setup

SUMMARY_PARAMS = GenerateParams(max_tokens=256, temperature=0.7, top_k=30, top_p=0.9, seed=0)


@dataclass(frozen=True)
class SummarizeOptions:
    rows: np.ndarray | None = None
    n_cells: int = 5
    n_genes: int | None = None
    n_markers: int = 20
    template_index: int = 0
    params: GenerateParams = SUMMARY_PARAMS
    seed: int = 0


@dataclass(frozen=True)
class SummaryResult:
    text: str
    prompt: str
    template_id: str
    markers: list[MarkerGene]
    cell_rows: np.ndarray
    finish_reason: str
    warnings: tuple[str, ...] = field(default=())


def pick_cells(rows: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` cells of the selection, spread evenly (seeded, sorted)."""
    if len(rows) <= n:
        return np.sort(rows)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(rows, n, replace=False))


def summarize(
    dataset: Dataset,
    engine: Engine,
    options: SummarizeOptions = SummarizeOptions(),
    on_token: TokenCallback | None = None,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> SummaryResult:
    """Describe the selected cells in plain language (streamed to ``on_token``)."""
    job = setup(SUMMARIZE, engine, dataset, options.rows, options.n_genes)
    markers: list[MarkerGene] = []
    if len(job.rows) < dataset.n_cells:
        progress(0.0, "computing top genes")
        markers = top_genes(dataset, job.rows, options.n_markers, cancel=cancel)
    cells = pick_cells(job.rows, options.n_cells, options.seed)
    sentences = cell_sentences(dataset, cells, top_k=job.n_genes)
    tmpl = template(NL_INTERPRETATION, options.template_index)

    def build(n: int) -> str:
        return tmpl.format(
            **prompt_values(organism=dataset.organism, n_genes=n, sentences=sentences)
        )

    prompt, _, shortened = fit_prompt(engine, build, job.n_genes, options.params.max_tokens)
    progress(0.5, "generating the summary")
    out = engine.generate(prompt, options.params, on_token=on_token, cancel=cancel)
    return SummaryResult(
        out.text.strip(),
        prompt,
        tmpl.id,
        markers,
        cells,
        out.finish_reason,
        (*job.warnings, *shortened),
    )
