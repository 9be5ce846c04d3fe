"""Held-out quality of the demo model, through the app's own engine and tasks.

    python resources/demo/evaluate_demo_model.py [MODEL.gguf] [--per-type-cells 5]

Prints (1) cell-type accuracy on the held-out split (label log-likelihood over the training
labels, template 0, 200 genes), overall and per type, with the most-common-label baseline;
(2) for cells generated per cell type: the fraction of generated words that are genes of the
dataset, and the Pearson correlation between the mean inverse-transformed expression of the
generated cells and the mean log10-normalised expression of the real held-out cells of that type.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from c2s_desktop.core.dataset import open_dataset  # noqa: E402
from c2s_desktop.core.engine.base import EngineOptions  # noqa: E402
from c2s_desktop.core.engine.local import LocalEngine  # noqa: E402
from c2s_desktop.core.inverse import log10_normalize  # noqa: E402
from c2s_desktop.core.sentences import to_word_matrix  # noqa: E402
from c2s_desktop.core.tasks.annotate import MODE_PER_CELL, AnnotateOptions, annotate  # noqa: E402
from c2s_desktop.core.tasks.generate import GenerateOptions, generate_cells  # noqa: E402

DATA = HERE / "pbmc_demo.h5ad"
MODEL = HERE / "c2s-demo-pbmc.q8_0.gguf"


def evaluate(model: Path, per_type_cells: int = 5, threads: int | None = None) -> dict:
    split = json.loads((HERE / "demo_split.json").read_text())
    train, test = np.array(split["train"]), np.array(split["test"])
    results: dict = {}
    with (
        open_dataset(DATA) as ds,
        LocalEngine(model, EngineOptions(n_ctx=1024, threads=threads)) as engine,
    ):
        labels = ds.obs[split["label_key"]].astype(str).to_numpy()
        candidates = tuple(sorted(set(labels[train])))
        res = annotate(
            ds,
            engine,
            AnnotateOptions(candidates=candidates, mode=MODE_PER_CELL, rows=test, n_genes=200),
        )
        truth = labels[test]
        correct = res.labels.astype(str) == truth
        baseline = max(np.mean(truth == c) for c in candidates)
        results["accuracy"] = float(correct.mean())
        results["baseline"] = float(baseline)
        results["per_type"] = {
            c: (float(correct[truth == c].mean()), int((truth == c).sum()))
            for c in np.unique(truth)
        }
        print(
            f"cell-type accuracy on {len(test)} held-out cells: {correct.mean():.1%} "
            f"(most-common-label baseline {baseline:.1%})"
        )
        for c, (acc, n) in results["per_type"].items():
            print(f"  {acc:6.1%}  n={n:<4d} {c}")
        real = log10_normalize(
            to_word_matrix(ds.matrix.rows(0, ds.n_cells), ds.vocabulary), ds.source.kind, None, None
        )
        gen_stats = {}
        for c in candidates:
            out = generate_cells(
                ds,
                engine,
                GenerateOptions(cell_type=c, n_cells=per_type_cells, organism=ds.organism, seed=1),
            )
            rows = test[truth == c]
            real_mean = np.asarray(real[rows].mean(axis=0)).ravel()
            gen_mean = np.asarray(out.adata.X.mean(axis=0)).ravel()
            r = float(np.corrcoef(real_mean, gen_mean)[0, 1])
            gen_stats[c] = {"valid_fraction": out.valid_fraction, "pearson_r": r}
            print(
                f"  generated {per_type_cells} × {c}: {out.valid_fraction:.1%} valid genes, "
                f"r = {r:.2f} with real mean expression"
            )
        results["generation"] = gen_stats
        valid = np.mean([g["valid_fraction"] for g in gen_stats.values()])
        corr = np.mean([g["pearson_r"] for g in gen_stats.values()])
        print(f"generation: {valid:.1%} valid gene names, mean r = {corr:.2f}")
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model", nargs="?", type=Path, default=MODEL)
    p.add_argument("--per-type-cells", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    evaluate(args.model, args.per_type_cells, args.threads)


if __name__ == "__main__":
    main()
