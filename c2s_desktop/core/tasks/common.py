"""What every task needs: which cells, how many genes, capability warnings, timing."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..catalog import ALL_TASKS, Capabilities, capabilities
from ..errors import DataError

if TYPE_CHECKING:
    from ..dataset import Dataset
    from ..engine.base import Engine


@dataclass(frozen=True)
class TaskSetup:
    """Resolved common inputs: the cells, genes per sentence, warnings to show first."""

    rows: np.ndarray
    n_genes: int
    capabilities: Capabilities
    warnings: tuple[str, ...]


def setup(
    task: str,
    engine: Engine,
    dataset: Dataset | None,
    rows: np.ndarray | None,
    n_genes: int | None,
) -> TaskSetup:
    """Check the request and gather warnings (model not trained for ``task``, gene casing)."""
    caps = capabilities(engine.info.metadata)
    # a custom template is the user's own: no "not trained for" warning
    warnings = [w for w in (caps.warning_for(task),) if w and task in ALL_TASKS]
    if dataset is None:
        return TaskSetup(np.zeros(0, np.int64), n_genes or caps.n_genes, caps, tuple(warnings))
    selected = np.arange(dataset.n_cells) if rows is None else np.asarray(rows, dtype=np.int64)
    if len(selected) == 0:
        raise DataError("no cells selected", path=dataset.path, hint="select at least one cell")
    if selected.min() < 0 or selected.max() >= dataset.n_cells:
        raise DataError("cell selection is outside the dataset", path=dataset.path)
    warnings += casing_warnings(dataset)
    return TaskSetup(selected, n_genes or caps.n_genes, caps, tuple(warnings))


def casing_warnings(dataset: Dataset) -> list[str]:
    """Warn when symbol casing contradicts the organism (mouse-style symbols in a human prompt)."""
    symbols = [s for s in dataset.symbols.symbols[:: max(1, dataset.n_genes // 2000)] if s]
    if not symbols:
        return []
    mouse_style = np.mean([s[:1].isupper() and any(c.islower() for c in s[1:]) for s in symbols])
    if dataset.organism == "Homo sapiens" and mouse_style > 0.5:
        return [
            "gene symbols look like mouse symbols (e.g. Cd74) but the organism is Homo sapiens;"
            " set the organism to Mus musculus if this is mouse data"
        ]
    if dataset.organism == "Mus musculus" and mouse_style < 0.1:
        return [
            "gene symbols look like human symbols (all upper case) but the organism is Mus "
            "musculus; set the organism to Homo sapiens if this is human data"
        ]
    return []


def parse_selector(dataset: Dataset, selector: str | None) -> np.ndarray | None:
    """``COLUMN=VALUE`` or a file of cell ids (one per line) → row indices; None = all cells."""
    if not selector:
        return None
    from pathlib import Path

    path = Path(selector)
    if "=" in selector and not path.exists():
        column, value = selector.split("=", 1)
        if column not in dataset.obs.columns:
            raise DataError(
                f"no obs column '{column}'",
                path=dataset.path,
                hint=f"available: {', '.join(map(str, dataset.obs.columns))}",
            )
        rows = np.flatnonzero(dataset.obs[column].astype(str).to_numpy() == value)
        if not len(rows):
            values = ", ".join(map(str, dataset.obs[column].astype(str).unique()[:8]))
            raise DataError(
                f"no cells with {column}={value}",
                path=dataset.path,
                hint=f"values include: {values}",
            )
        return rows
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            ids = [row[0].strip() for row in csv.reader(fh) if row and row[0].strip()]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(
            f"cannot read the cell list ({exc})",
            path=path,
            hint="give COLUMN=VALUE or a text file with one cell id per line",
        ) from exc
    if ids and ids[0] == "cell_id":
        ids = ids[1:]
    position = {c: i for i, c in enumerate(dataset.cell_ids)}
    missing = [i for i in ids if i not in position]
    if missing:
        raise DataError(
            f"{len(missing):,} cell ids are not in the dataset (e.g. {missing[0]})", path=path
        )
    return np.array([position[i] for i in ids], dtype=np.int64)


def context_size(engine: Engine) -> int:
    """Tokens the engine's context holds (its configured size, else the model's trained one)."""
    return int(getattr(engine, "n_ctx", 0) or engine.info.n_ctx_train or 2048)


def fit_prompt(
    engine: Engine, build: Callable[[int], str], n_genes: int, reserve: int, min_genes: int = 20
) -> tuple[str, int, list[str]]:
    """The prompt ``build(n)`` with the most genes per cell (≤ ``n_genes``) that leaves
    ``reserve`` tokens free in the context; a warning says when genes were dropped."""
    limit = context_size(engine) - reserve
    n = n_genes
    prompt = build(n)
    used = len(engine.tokenize(prompt))
    while used > limit and n > min_genes:
        n = max(min_genes, int(n * limit / used * 0.95))
        prompt = build(n)
        used = len(engine.tokenize(prompt))
    warnings = []
    if n < n_genes:
        warnings.append(
            f"prompt shortened to {n} genes per cell to fit the model's context of "
            f"{context_size(engine)} tokens"
        )
    return prompt, n, warnings


class CellPromptFitter:
    """Builds one-cell prompts, keeping the top genes that fit the context (``reserve`` free).

    ``build(sentence, n)`` formats the prompt with the first ``n`` genes. Prompts are tokenized
    only when they may be too long: the tokens per character seen so far give a safe estimate,
    so a server is not asked to tokenize every cell.
    """

    def __init__(
        self,
        engine: Engine,
        build: Callable[[str, int], str],
        n_genes: int,
        reserve: int,
        min_genes: int = 20,
    ) -> None:
        self._engine = engine
        self._build = build
        self.n_genes = n_genes
        self.context = context_size(engine)
        self.limit = self.context - reserve
        self._min_genes = min_genes
        self._ratio = 0.0  # the most tokens per character measured so far
        self.shortened = 0
        self.fewest = n_genes

    def __call__(self, sentence: str) -> str:
        n = min(self.n_genes, len(sentence.split()))
        prompt = self._build(sentence, n)
        if self._ratio and len(prompt) * self._ratio < 0.8 * self.limit:
            return prompt
        used = len(self._engine.tokenize(prompt))
        self._ratio = max(self._ratio, used / max(1, len(prompt)))
        if used <= self.limit:
            return prompt
        while used > self.limit and n > self._min_genes:
            n = max(self._min_genes, int(n * self.limit / used * 0.95))
            prompt = self._build(sentence, n)
            used = len(self._engine.tokenize(prompt))
        self.shortened += 1
        self.fewest = min(self.fewest, n)
        return prompt

    def warning(self) -> str | None:
        """What was shortened, or None."""
        if not self.shortened:
            return None
        return (
            f"{self.shortened:,} cell prompts shortened (to as few as {self.fewest} of "
            f"{self.n_genes} genes) to fit the model's context of {self.context} tokens"
        )
