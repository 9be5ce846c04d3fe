"""Small labelled h5ad files for the fine-tuning tests: each label's cells express their own
genes (taken from the probe cells the tiny checkpoints' tokenizers were trained on) highly."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tests.conftest import write_h5ad

LABELS = ("natural killer cell", "CD14-positive monocyte", "B cell")
"""The probe labels, swapped: B-cell markers are called "natural killer cell" and so on, a
label set the tiny models were not trained on (they learned the original names)."""


def probe_genes() -> list[list[str]]:
    data = json.loads(
        resources.files("c2s_quantize").joinpath("data/probes.json").read_text("utf-8")
    )
    return [list(cell["genes"]) for cell in data["cells"]]


def labelled_h5ad(
    path: Path,
    labels: tuple[str, ...] = LABELS,
    per_label: int = 12,
    seed: int = 0,
    column: str = "lab_label",
) -> Path:
    """``per_label`` cells per label; label k's markers are the genes only probe cell k has."""
    cells = probe_genes()
    genes = list(dict.fromkeys(g for c in cells for g in c))
    rng = np.random.default_rng(seed)
    rows, names = [], []
    for k, label in enumerate(labels):
        others = {g for j, c in enumerate(cells) if j != k + 2 for g in c}
        markers = [genes.index(g) for g in cells[k + 2] if g not in others][:8]
        for _ in range(per_label):
            x = rng.poisson(0.5, len(genes)).astype(np.float32)
            x[markers] += rng.poisson(30, len(markers))
            rows.append(x)
            names.append(label)
    obs = pd.DataFrame(
        {column: pd.Categorical(names), "batch": ["b1"] * len(names)},
        index=[f"cell{i}" for i in range(len(names))],
    )
    return write_h5ad(path, sp.csr_matrix(np.vstack(rows)), genes, obs=obs)
