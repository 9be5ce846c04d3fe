"""The stratified, seeded training / held-out split of the labelled cells (no torch needed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError
from ..tasks.common import parse_selector
from .options import FinetuneOptions, SplitPlan

if TYPE_CHECKING:
    from ..dataset import Dataset

MIN_PER_LABEL = 2
"""Cells a label needs: at least one to train on and one to hold out."""


def cell_labels(dataset: Dataset, label_key: str) -> np.ndarray:
    """The label column as strings ('' for a missing label); DataError if there is no column."""
    dataset.require_obs([label_key])
    column = dataset.obs[label_key]
    values = column.astype(str).to_numpy().astype(object)
    values[column.isna().to_numpy()] = ""
    return np.array([v.strip() for v in values], dtype=object)


def plan_split(dataset: Dataset, options: FinetuneOptions) -> SplitPlan:
    """Per label, a seeded random ``holdout`` fraction (at least one cell) is held out.

    Raises :class:`DataError` for a missing column, a single label, a label with fewer than
    :data:`MIN_PER_LABEL` cells or a held-out fraction outside (0, 1).
    """
    if not 0.0 < options.holdout < 1.0:
        raise DataError(
            f"held-out fraction {options.holdout} is not between 0 and 1", hint="e.g. 0.2"
        )
    labels = cell_labels(dataset, options.label_key)
    rows = parse_selector(dataset, options.cells)
    rows = np.arange(dataset.n_cells) if rows is None else np.unique(rows)
    named = rows[labels[rows] != ""]
    classes, counts = np.unique(labels[named].astype(str), return_counts=True)
    where = f"column '{options.label_key}'"
    if options.cells:
        where += f" of cells {options.cells}"
    if len(classes) < 2:
        found = f"only '{classes[0]}'" if len(classes) else "no labels"
        raise DataError(
            f"{where} has {found}; fine-tuning needs at least two labels",
            path=dataset.path,
            hint="choose another label column or a wider cell selection",
        )
    rare = [f"{c} ({n})" for c, n in zip(classes, counts, strict=True) if n < MIN_PER_LABEL]
    if rare:
        raise DataError(
            f"too few cells for the split in {where}: {', '.join(rare[:5])}"
            f"{', ...' if len(rare) > 5 else ''}; each label needs at least {MIN_PER_LABEL}",
            path=dataset.path,
            hint="leave those labels out (--cells) or merge them into others",
        )
    rng = np.random.default_rng(options.seed)
    train: list[int] = []
    held: list[int] = []
    n_train: list[int] = []
    n_held: list[int] = []
    for label in classes:
        idx = rng.permutation(named[labels[named] == label])
        k = min(len(idx) - 1, max(1, round(len(idx) * options.holdout)))
        held.extend(int(i) for i in idx[:k])
        train.extend(int(i) for i in idx[k:])
        n_held.append(k)
        n_train.append(len(idx) - k)
    return SplitPlan(
        tuple(str(c) for c in classes),
        tuple(n_train),
        tuple(n_held),
        tuple(sorted(train)),
        tuple(sorted(held)),
        unlabelled=len(rows) - len(named),
    )
