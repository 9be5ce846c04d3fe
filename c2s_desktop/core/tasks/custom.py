"""A user's own prompt template run over selected cells (perturbation, fate, ... prompts)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..dataset import Dataset
from ..engine.base import Engine, GenerateParams
from ..progress import CancelToken, ProgressFn, check_cancel, no_progress
from ..prompts import Template, prompt_values
from ..sentences import cell_sentences
from .common import setup


@dataclass(frozen=True)
class CustomOptions:
    template: Template
    rows: np.ndarray | None = None
    n_genes: int | None = None
    n_cells_per_prompt: int = 5
    params: GenerateParams = GenerateParams(max_tokens=256)
    extra: tuple[tuple[str, str], ...] = ()  # other placeholder values, e.g. ("cell_type", "B")


@dataclass(frozen=True)
class CustomResult:
    rows: list[np.ndarray]
    prompts: list[str]
    answers: list[str]
    template_id: str
    warnings: tuple[str, ...] = field(default=())


def run_template(
    dataset: Dataset,
    engine: Engine,
    options: CustomOptions,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> CustomResult:
    """One prompt per cell, or per block of cells when the template uses multi-cell blocks."""
    job = setup("custom", engine, dataset, options.rows, options.n_genes)
    multi = "multi_cell_sentences" in options.template.fields
    size = options.n_cells_per_prompt if multi else 1
    groups = [job.rows[i : i + size] for i in range(0, len(job.rows), size)]
    rows_out, prompts, answers = [], [], []
    for k, group in enumerate(groups):
        check_cancel(cancel)
        sentences = cell_sentences(dataset, group, top_k=job.n_genes)
        values = prompt_values(
            organism=dataset.organism,
            n_genes=job.n_genes,
            sentence=None if multi else sentences[0],
            sentences=sentences if multi else None,
        )
        values.update(dict(options.extra))
        prompt = options.template.format(**values)
        out = engine.generate(prompt, options.params, cancel=cancel)
        rows_out.append(group)
        prompts.append(prompt)
        answers.append(out.text.strip())
        progress((k + 1) / len(groups), f"{k + 1}/{len(groups)} prompts")
    return CustomResult(rows_out, prompts, answers, options.template.id, job.warnings)
