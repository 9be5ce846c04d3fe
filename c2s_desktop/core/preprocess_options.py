"""The options of :func:`~.preprocess.preprocess_file` (a light module: the CLI declares its
options from these defaults at start-up, before scanpy or pandas load)."""

from __future__ import annotations

from dataclasses import dataclass

STAGES = ("qc", "filter", "normalize", "hvg", "pca", "neighbors", "umap", "leiden", "markers")
"""The stages of preprocessing, in order (their seconds are reported)."""


@dataclass(frozen=True)
class PreprocessOptions:
    """Thresholds and parameters; the defaults follow scanpy's clustering tutorial."""

    min_genes: int = 100
    max_genes: int | None = None
    max_pct_mt: float | None = None
    min_cells: int = 3
    n_top_genes: int = 2000
    n_pcs: int = 50
    n_neighbors: int = 15
    resolution: float = 1.0
    seed: int = 0
