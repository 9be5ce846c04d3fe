"""Questions about selected cells, with the conversation so far.

No released C2S model publishes a question-answering prompt format, so the prompt is the C2S
multi-cell block (as in the natural-language interpretation template) followed by the turns as
``Question: ...`` / ``Answer: ...`` lines; documented as such in the UI (template id
``c2s-desktop/ask``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..catalog import ASK
from ..dataset import Dataset
from ..engine.base import Engine, GenerateParams, TokenCallback
from ..errors import DataError
from ..progress import CancelToken
from ..prompts import multi_cell_block
from ..sentences import cell_sentences
from .common import fit_prompt, setup
from .summarize import pick_cells

ASK_TEMPLATE_ID = "c2s-desktop/ask"
ASK_PARAMS = GenerateParams(
    max_tokens=200, temperature=0.7, top_k=30, top_p=0.9, seed=0, stop=("\nQuestion:",)
)


@dataclass(frozen=True)
class Turn:
    question: str
    answer: str


@dataclass(frozen=True)
class AskOptions:
    rows: np.ndarray | None = None
    history: tuple[Turn, ...] = ()
    n_cells: int = 5
    n_genes: int | None = None
    params: GenerateParams = ASK_PARAMS
    seed: int = 0


@dataclass(frozen=True)
class AskResult:
    question: str
    answer: str
    prompt: str
    template_id: str
    history: tuple[Turn, ...]
    finish_reason: str
    warnings: tuple[str, ...] = field(default=())


def build_prompt(organism: str, n_genes: int, sentences: list[str], history, question) -> str:  # noqa: ANN001
    """The multi-cell block, then previous turns, then the new question."""
    head = (
        f"The following are {len(sentences)} {organism} cells, each a list of {n_genes} gene "
        f"names ordered by descending expression level.\n"
    )
    turns = "".join(f"Question: {t.question}\nAnswer: {t.answer}\n" for t in history)
    return f"{head}{multi_cell_block(sentences, n_genes)}{turns}Question: {question}\nAnswer:"


def ask(
    dataset: Dataset,
    engine: Engine,
    question: str,
    options: AskOptions = AskOptions(),
    on_token: TokenCallback | None = None,
    cancel: CancelToken | None = None,
) -> AskResult:
    """Answer ``question`` about the selected cells; the new turn is appended to the history."""
    if not question.strip():
        raise DataError("the question is empty", hint="type a question about the selected cells")
    job = setup(ASK, engine, dataset, options.rows, options.n_genes)
    cells = pick_cells(job.rows, options.n_cells, options.seed)
    sentences = cell_sentences(dataset, cells, top_k=job.n_genes)
    prompt, _, shortened = fit_prompt(
        engine,
        lambda n: build_prompt(dataset.organism, n, sentences, options.history, question.strip()),
        job.n_genes,
        options.params.max_tokens,
    )
    out = engine.generate(prompt, options.params, on_token=on_token, cancel=cancel)
    answer = out.text.strip()
    history = (*options.history, Turn(question.strip(), answer))
    return AskResult(
        question.strip(),
        answer,
        prompt,
        ASK_TEMPLATE_ID,
        history,
        out.finish_reason,
        (*job.warnings, *shortened),
    )
