"""Synthetic cells for a cell type, turned back into expression with the inverse transform."""

from __future__ import annotations

from dataclasses import dataclass, field

import anndata as ad
import pandas as pd
import scipy.sparse as sp

from ..catalog import GENERATE
from ..dataset import Dataset
from ..engine.base import Engine, GenerateParams
from ..errors import DataError
from ..inverse import InverseFit, expression_matrix, fit_inverse, postprocess_generated
from ..progress import CancelToken, ProgressFn, check_cancel, no_progress
from ..prompts import CELL_TYPE_GENERATION, prompt_values, template
from .common import setup


@dataclass(frozen=True)
class GenerateOptions:
    cell_type: str
    n_cells: int = 10
    organism: str = "Homo sapiens"
    n_genes: int | None = None
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 0.95
    seed: int = 0
    template_index: int = 0
    max_tokens: int | None = None
    """Tokens per generated cell (default: enough for ``n_genes`` gene names)."""


@dataclass(frozen=True)
class GenerateResult:
    adata: ad.AnnData
    sentences: list[str]
    n_invalid: list[int]
    fit: InverseFit
    template_id: str
    warnings: tuple[str, ...] = field(default=())

    @property
    def valid_fraction(self) -> float:
        total = sum(len(s.split(" ")) for s in self.sentences if s) + sum(self.n_invalid)
        return 1.0 - sum(self.n_invalid) / max(1, total)


def generate_cells(
    reference: Dataset,
    engine: Engine,
    options: GenerateOptions,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> GenerateResult:
    """Generate ``n_cells`` cells of ``cell_type``; expression uses a fit on ``reference``."""
    if not options.cell_type.strip():
        raise DataError("no cell type given", hint="e.g. --cell-type 'B cell'")
    if options.n_cells < 1:
        raise DataError("the number of cells must be at least 1")
    job = setup(GENERATE, engine, None, None, options.n_genes)
    tmpl = template(CELL_TYPE_GENERATION, options.template_index)
    prompt = tmpl.format(
        **prompt_values(
            organism=options.organism, n_genes=job.n_genes, cell_type=options.cell_type.strip()
        )
    )
    progress(0.0, "fitting the inverse transform on the reference")
    fit = fit_inverse(reference)
    vocabulary = [str(w) for w in reference.vocabulary.words]
    sentences, invalid = [], []
    for i in range(options.n_cells):
        check_cancel(cancel)
        params = GenerateParams(
            max_tokens=options.max_tokens or job.n_genes * 6 + 16,
            temperature=options.temperature,
            top_k=options.top_k,
            top_p=options.top_p,
            seed=options.seed + i,
            stop=("\n",),
        )
        out = engine.generate(prompt, params, cancel=cancel)
        clean = postprocess_generated(out.text, vocabulary)
        sentences.append(" ".join(clean.genes))
        invalid.append(clean.n_invalid)
        progress((i + 1) / options.n_cells, f"{i + 1}/{options.n_cells} cells generated")
    X = expression_matrix(sentences, vocabulary, fit)
    obs = pd.DataFrame(
        {
            "cell_type": [options.cell_type] * options.n_cells,
            "c2s_sentence": sentences,
            "c2s_invalid_words": invalid,
        },
        index=[f"generated_{i}" for i in range(options.n_cells)],
    )
    adata = ad.AnnData(X=sp.csr_matrix(X), obs=obs, var=pd.DataFrame(index=vocabulary))
    adata.uns["c2s_inverse_fit"] = {
        "slope": fit.slope,
        "intercept": fit.intercept,
        "r_squared": fit.r_squared,
    }
    return GenerateResult(adata, sentences, invalid, fit, tmpl.id, job.warnings)
