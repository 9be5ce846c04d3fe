"""Benchmark batch annotation through an OpenAI-compatible server vs the local model process.

Starts llama-cpp-python's server (``python -m llama_cpp.server``) on loopback with the same
GGUF, then annotates the same cells (per-cell mode, candidates from ``obs['cell_type']``) with

* ``local``: ProcessEngine (the app's default engine), one cell after another;
* ``server xN``: RemoteEngine with N = 1, 2, 4 requests in flight (``--concurrency``),

each with both scoring methods: ``logprobs`` (echoed prompt log-probabilities, one request per
candidate label; forced here, as for a server known to return them correctly) and ``generate``
(one greedy answer per cell, approximate). It prints cells/s and the share of labels equal to
the local engine's. llama-cpp-python's server runs one request at a time, so concurrency there only
overlaps the HTTP round trips with the model's work; servers with parallel slots (llama.cpp
``--parallel``, vLLM) gain more. With the demo model (GPT-NeoX, no BOS) llama-cpp-python's
echoed log-probabilities are shifted by one token, so ``logprobs`` labels are wrong there: that
row measures the cost of the method, not its answers.

    python bench/remote.py                      # demo model, 8 cells
    python bench/remote.py --model big.gguf --cells 50 --threads 4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from c2s_desktop.core.dataset import open_dataset  # noqa: E402
from c2s_desktop.core.engine.base import Engine, EngineOptions  # noqa: E402
from c2s_desktop.core.engine.process import ProcessEngine  # noqa: E402
from c2s_desktop.core.engine.remote import (  # noqa: E402
    SCORE_APPROXIMATE,
    SCORE_EXACT,
    RemoteEngine,
    ServerOptions,
)
from c2s_desktop.core.resources import resource_path  # noqa: E402
from c2s_desktop.core.tasks.annotate import MODE_PER_CELL, AnnotateOptions, annotate  # noqa: E402
from tests.engine.llama_server import llama_server  # noqa: E402

OUT = ROOT / "bench" / "out" / "remote.json"


def timed(dataset, engine: Engine, opts: AnnotateOptions) -> tuple[float, list[str]]:  # noqa: ANN001
    start = time.perf_counter()
    result = annotate(dataset, engine, opts)
    return time.perf_counter() - start, [str(x) for x in result.labels]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", type=Path, default=resource_path("demo", "c2s-demo-pbmc.q8_0.gguf")
    )
    parser.add_argument("--data", type=Path, default=resource_path("demo", "pbmc_demo.h5ad"))
    parser.add_argument("--cells", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="model threads (both engines)")
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    methods = [SCORE_EXACT, SCORE_APPROXIMATE]
    parser.add_argument("--scoring", nargs="+", choices=methods, default=methods)
    args = parser.parse_args()

    dataset = open_dataset(args.data)
    rows = np.linspace(0, dataset.n_cells - 1, args.cells).astype(np.int64)
    opts = AnnotateOptions(candidates_from="cell_type", mode=MODE_PER_CELL, rows=rows)
    n_labels = dataset.obs["cell_type"].nunique()
    print(f"{args.model.name}: {len(rows)} cells x {n_labels} candidate labels, per-cell mode")

    print(f"{'engine':24} {'in flight':>9} {'cells/s':>8} {'s/cell':>7}  labels as local")
    results: list[dict] = []

    def report(engine: str, n: int, seconds: float, labels: list[str] | None) -> None:
        same = "" if labels is None else f"{np.mean(np.array(labels) == reference):.0%}"
        row = {"engine": engine, "concurrency": n, "seconds": seconds, "labels_as_local": same}
        results.append(row | {"cells_per_s": len(rows) / seconds})
        print(
            f"{engine:24} {n:>9} {len(rows) / seconds:>8.2f} {seconds / len(rows):>7.3f}  {same}",
            flush=True,
        )

    with ProcessEngine(args.model, EngineOptions(n_ctx=args.ctx, threads=args.threads)) as local:
        seconds, reference = timed(dataset, local, opts)
    report("local (ProcessEngine)", 1, seconds, None)
    with llama_server(args.model, n_ctx=args.ctx, threads=args.threads) as url:
        for scoring in args.scoring:
            for n in args.concurrency:
                options = ServerOptions(url, n_ctx=args.ctx, concurrency=n, scoring=scoring)
                with RemoteEngine(options) as remote:
                    seconds, labels = timed(dataset, remote, opts)
                report(f"server, {scoring}", n, seconds, labels)
    dataset.close()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"model": str(args.model), "cells": len(rows), "runs": results}))


if __name__ == "__main__":
    main()
