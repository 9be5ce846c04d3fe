"""Training and scoring examples: the released cell-type prompt the engine scores, the label
as its continuation (``" <label>."``), token ids split where the answer starts (no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..engine.base import common_prefix
from ..prompts import CELL_TYPE_PREDICTION, label_continuation, prompt_values, template

MIN_GENES = 20


@dataclass(frozen=True)
class Example:
    """One cell's prompt as token ids, and each candidate label's answer tokens after it."""

    prompt: str
    sequences: tuple[tuple[int, ...], ...]
    """Per candidate label: the tokens of prompt + answer, tokenized together."""
    splits: tuple[int, ...]
    """Per candidate label: where its answer starts (the tokens it shares with the prompt's
    own tokenization, as the engine splits them)."""
    n_genes: int


class ExampleBuilder:
    """Builds :class:`Example` objects with a Hugging Face tokenizer, keeping the top genes
    that fit ``n_ctx`` with the longest answer and EOS after them (as the engine's fitter)."""

    def __init__(
        self,
        tokenizer: Any,
        labels: Sequence[str],
        organism: str,
        n_genes: int,
        n_ctx: int,
        template_index: int = 0,
    ) -> None:
        self.tokenizer = tokenizer
        self.continuations = [label_continuation(lab) for lab in labels]
        self.template = template(CELL_TYPE_PREDICTION, template_index)
        self.organism = organism
        self.n_genes = n_genes
        longest = max(len(self._ids(c)) for c in self.continuations)
        self.limit = n_ctx - longest - 2
        self.shortened = 0

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    def prompt(self, sentence: str, n: int) -> str:
        values = prompt_values(organism=self.organism, n_genes=n, sentence=sentence)
        return self.template.format(**values)

    def __call__(self, sentence: str) -> Example:
        n = min(self.n_genes, len(sentence.split()))
        prompt = self.prompt(sentence, n)
        ids = self._ids(prompt)
        if len(ids) > self.limit:
            self.shortened += 1
        while len(ids) > self.limit and n > MIN_GENES:
            n = max(MIN_GENES, int(n * self.limit / len(ids) * 0.95))
            prompt = self.prompt(sentence, n)
            ids = self._ids(prompt)
        joint = self.tokenizer([prompt + c for c in self.continuations])["input_ids"]
        fulls = [tuple(f) for f in joint]
        splits = tuple(max(1, common_prefix(f, ids)) for f in fulls)
        return Example(prompt, tuple(fulls), splits, n)

    def warning(self) -> str | None:
        if not self.shortened:
            return None
        return f"{self.shortened:,} cell prompts shortened to fit the model's context"
