"""Benchmark: representative-mode annotation of a 100k-cell dataset with a 410M-parameter model.

    python bench/annotate_representative.py [--cells 100000] [--model GGUF] [--sample 30]

Builds (once) a synthetic dataset with ``--types`` cell-type programs (genes named after the
demo dataset's genes), then runs ``c2s_desktop.core.tasks.annotate`` in representative mode
(k-means on expression PCA, 5 cells per cluster, labels propagated) through the ProcessEngine,
timing every stage; then scores ``--sample`` random cells per cell and reports how often the
propagated label equals the per-cell label. The model is the Pythia-410M-shaped GGUF that
``bench/engine.py`` builds (random weights: the agreement measures the propagation, not biology).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out"
LABELS = (
    "B cell",
    "CD4-positive, alpha-beta T cell",
    "CD8-positive, alpha-beta T cell",
    "natural killer cell",
    "classical monocyte",
    "non-classical monocyte",
    "conventional dendritic cell",
    "plasmacytoid dendritic cell",
    "platelet",
    "hematopoietic stem cell",
)


def make_dataset(path: Path, n_cells: int, n_types: int, seed: int = 0) -> Path:
    if path.exists():
        return path
    import anndata as ad

    from c2s_desktop.core.dataset import open_dataset

    with open_dataset(ROOT / "resources" / "demo" / "pbmc_demo.h5ad") as demo:
        genes = [str(g) for g in demo.var.index]
    n_genes = len(genes)
    rng = np.random.default_rng(seed)
    base = rng.gamma(0.3, 1.0, n_genes)
    programs = np.repeat(base[None, :], n_types, axis=0)
    for t in range(n_types):
        programs[t, rng.choice(n_genes, 40, replace=False)] *= rng.uniform(5, 20, 40)
    types = rng.integers(0, n_types, n_cells)
    blocks = []
    for start in range(0, n_cells, 10_000):
        t = types[start : start + 10_000]
        lam = programs[t] * rng.uniform(0.5, 1.5, (len(t), 1))
        blocks.append(sp.csr_matrix(rng.poisson(lam).astype(np.float32)))
    X = sp.vstack(blocks, format="csr")
    obs = pd.DataFrame(
        {"true_program": pd.Categorical(types.astype(str))},
        index=[f"cell{i}" for i in range(n_cells)],
    )
    ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=genes)).write_h5ad(path)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cells", type=int, default=100_000)
    p.add_argument("--types", type=int, default=10)
    p.add_argument("--model", type=Path, default=OUT / "engine" / "full" / "model.q4_k_m.gguf")
    p.add_argument("--per-cluster", type=int, default=5)
    p.add_argument("--sample", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if not args.model.exists():
        sys.exit(f"{args.model} missing: run `python bench/engine.py` first to build it")
    from c2s_desktop.core.dataset import open_dataset
    from c2s_desktop.core.engine.base import EngineOptions
    from c2s_desktop.core.engine.process import ProcessEngine
    from c2s_desktop.core.tasks.annotate import (
        MODE_PER_CELL,
        MODE_REPRESENTATIVE,
        AnnotateOptions,
        annotate,
    )

    OUT.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    data = make_dataset(OUT / f"representative_{args.cells}.h5ad", args.cells, args.types)
    print(f"dataset ready in {time.perf_counter() - t0:.0f} s: {data}")
    stages: dict[str, float] = {}
    last = [time.perf_counter()]

    def progress(fraction: float, message: str) -> None:
        stage = message.split(":")[0] if "scored" not in message else "scoring"
        now = time.perf_counter()
        stages[stage] = stages.get(stage, 0.0) + now - last[0]
        last[0] = now

    with (
        open_dataset(data) as ds,
        ProcessEngine(args.model, EngineOptions(n_ctx=2048, threads=args.threads)) as engine,
    ):
        t0 = time.perf_counter()
        last[0] = t0
        rep = annotate(
            ds,
            engine,
            AnnotateOptions(
                candidates=LABELS, mode=MODE_REPRESENTATIVE, per_cluster=args.per_cluster
            ),
            progress=progress,
        )
        total = time.perf_counter() - t0
        rng = np.random.default_rng(1)
        sample = np.sort(rng.choice(ds.n_cells, args.sample, replace=False))
        per = annotate(
            ds, engine, AnnotateOptions(candidates=LABELS, mode=MODE_PER_CELL, rows=sample)
        )
    propagated = rep.labels[sample]
    agreement = float(np.mean(propagated == per.labels))
    print("\n| cells | clusters | scored cells | s/scored cell | total min | target |")
    print("|---|---|---|---|---|---|")
    n_clusters = len(set(rep.clusters))
    print(
        f"| {args.cells:,} | {n_clusters} | {len(rep.scored_rows)} | "
        f"{rep.seconds_per_scored_cell:.2f} | {total / 60:.1f} | ≤ 30 min |"
    )
    print(
        f"\nagreement of propagated labels with per-cell labels on {args.sample} random cells: "
        f"{agreement:.0%}; mean per-cluster agreement of representatives "
        f"{np.mean(list(rep.cluster_agreement.values())):.0%}"
    )
    print("time by stage (s): " + ", ".join(f"{k} {v:.0f}" for k, v in stages.items()))


if __name__ == "__main__":
    main()
