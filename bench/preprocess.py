"""Benchmark: ``preprocess_file`` vs a plain scanpy script doing the same steps, same run.

Input: synthetic raw counts (negative-binomial, a few cluster programs, ~20k genes including
13 ``MT-`` and some ``RPS``/``RPL`` genes), written once per size under ``bench/out/``. Each
pipeline runs in its own fresh process (imports included); wall time and peak RSS of each are
printed side by side with their ratios (targets: time ≤ 1.1×, RSS ≤ 1.2×).

GUI-thread stall: a QApplication (offscreen) with a 10 ms QTimer while ``run_preprocess_process``
runs on a worker thread; the longest gap between ticks is reported (target < 100 ms).

Usage: python bench/preprocess.py [--cells 10000 100000] [--repeat 1] [--skip-stall]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import cpu_line  # noqa: E402

OUT = Path(__file__).parent / "out"
N_GENES = 20_000
N_PROGRAMS = 8
N_MITO = 13


def gene_names(n_genes: int) -> list[str]:
    mito = [f"MT-G{i}" for i in range(N_MITO)]
    ribo = [f"RPS{i}" for i in range(40)] + [f"RPL{i}" for i in range(40)]
    return mito + ribo + [f"GENE{i}" for i in range(n_genes - len(mito) - len(ribo))]


def write_synthetic(path: Path, n_cells: int, n_genes: int = N_GENES, seed: int = 0) -> Path:
    """Negative-binomial counts: gene means × cell library size × one program per cluster."""
    if path.exists():
        return path
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    base = rng.gamma(0.3, 0.4, n_genes)  # most genes rare, some common
    base[:N_MITO] = rng.uniform(2.0, 6.0, N_MITO)
    base[N_MITO : N_MITO + 80] = rng.uniform(1.0, 5.0, 80)
    programs = np.ones((N_PROGRAMS, n_genes))
    for k in range(N_PROGRAMS):
        genes = rng.choice(n_genes, 200, replace=False)
        programs[k, genes] = rng.uniform(4.0, 20.0, 200)
    cluster = rng.integers(0, N_PROGRAMS, n_cells)
    blocks = []
    for start in range(0, n_cells, 1000):
        stop = min(n_cells, start + 1000)
        lib = rng.lognormal(0.0, 0.4, stop - start)[:, None]
        mean = lib * base[None, :] * programs[cluster[start:stop]]
        dispersion = 2.0
        counts = rng.poisson(rng.gamma(dispersion, mean / dispersion)).astype(np.int32)
        blocks.append(sp.csr_matrix(counts))
    x = sp.vstack(blocks, format="csr")
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical([f"type{c}" for c in cluster])},
        index=[f"cell{i}" for i in range(n_cells)],
    )
    adata = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=gene_names(n_genes)))
    tmp = path.with_name(f".{path.name}.part")
    adata.write_h5ad(tmp)
    os.replace(tmp, path)
    return path


# -- the two pipelines (each runs in a fresh process) -------------------------------------------
def run_ours(data: Path, out: Path) -> None:
    from c2s_desktop.core.preprocess import PreprocessOptions, preprocess_file

    preprocess_file(data, out, PreprocessOptions(), overwrite=True)


def run_plain(data: Path, out: Path) -> None:
    """What a scanpy user writes for the same result (tutorial defaults, same outputs)."""
    import warnings

    import scanpy as sc

    warnings.simplefilter("ignore")
    adata = sc.read_h5ad(data)
    adata.var["mt"] = adata.var_names.str.startswith("MT-")
    adata.var["ribo"] = adata.var_names.str.startswith(("RPS", "RPL"))
    sc.pp.calculate_qc_metrics(
        adata, qc_vars=["mt", "ribo"], percent_top=None, log1p=False, inplace=True
    )
    sc.pp.filter_cells(adata, min_genes=100)
    adata.raw = adata
    sc.pp.filter_genes(adata, min_cells=3)
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    sc.pp.highly_variable_genes(adata, n_top_genes=2000)
    sc.tl.pca(adata, n_comps=50, random_state=0)
    sc.pp.neighbors(adata, n_neighbors=15, n_pcs=50, random_state=0)
    sc.tl.umap(adata, random_state=0)
    sc.tl.leiden(
        adata, resolution=1.0, random_state=0, flavor="igraph", n_iterations=2, directed=False
    )
    sc.tl.rank_genes_groups(adata, "leiden", method="wilcoxon", pts=True, use_raw=False)
    adata.write_h5ad(out)


def measure(which: str, data: Path, out: Path) -> tuple[float, float]:
    """Run one pipeline in a fresh process: (wall seconds, peak RSS in MB)."""
    cmd = [sys.executable, __file__, "--run", which, str(data), str(out)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{which} failed with exit code {proc.returncode}")
    return seconds, usage.ru_maxrss / 1024  # kB on Linux


def gui_stall(data: Path, out: Path) -> tuple[float, int, float]:
    """Longest gap (ms) between 10 ms timer ticks while the child process runs; ticks; seconds."""
    import threading

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from c2s_desktop.core.preprocess import PreprocessOptions, run_preprocess_process

    app = QApplication.instance() or QApplication([])
    ticks: list[float] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            run_preprocess_process(data, out, PreprocessOptions(), overwrite=True)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    worker = threading.Thread(target=work)
    timer = QTimer()
    timer.setInterval(10)

    def tick() -> None:
        ticks.append(time.perf_counter())
        if not worker.is_alive():
            app.quit()

    timer.timeout.connect(tick)
    start = time.perf_counter()
    worker.start()
    timer.start()
    app.exec()
    timer.stop()
    worker.join()
    if errors:
        raise errors[0]
    gaps = np.diff(ticks) * 1000 if len(ticks) > 1 else np.array([0.0])
    return float(gaps.max()), len(ticks), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, nargs="+", default=[10_000])
    parser.add_argument("--repeat", type=int, default=1, help="Runs of each; the best counts.")
    parser.add_argument("--skip-stall", action="store_true")
    parser.add_argument("--run", nargs=3, metavar=("WHICH", "DATA", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        which, data, out = args.run
        (run_ours if which == "ours" else run_plain)(Path(data), Path(out))
        return
    OUT.mkdir(exist_ok=True)
    print(f"CPU: {cpu_line()}")
    rows = []
    for n in args.cells:
        data = write_synthetic(OUT / f"preprocess_{n // 1000}k.h5ad", n)
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.repeat):
            for which in ("plain", "ours"):
                t, rss = measure(which, data, OUT / f"preprocess_{n // 1000}k_{which}.h5ad")
                old = best.get(which, (float("inf"), float("inf")))
                best[which] = (min(old[0], t), min(old[1], rss))
                print(f"  {n:,} cells, {which}: {t:.1f} s, {rss:,.0f} MB", flush=True)
        rows.append((n, best["plain"], best["ours"]))
    print()
    print(f"{'cells':>9}  {'scanpy s':>9}  {'ours s':>8}  {'time ×':>6}  "
          f"{'scanpy MB':>9}  {'ours MB':>8}  {'RSS ×':>6}")  # fmt: skip
    for n, (tp, rp), (to, ro) in rows:
        print(
            f"{n:>9,}  {tp:>9.1f}  {to:>8.1f}  {to / tp:>6.2f}  {rp:>9,.0f}  {ro:>8,.0f}  "
            f"{ro / rp:>6.2f}"
        )
    print("targets: time ≤ 1.10×, RSS ≤ 1.20×")
    if not args.skip_stall:
        n = min(args.cells)
        data = OUT / f"preprocess_{n // 1000}k.h5ad"
        gap, n_ticks, seconds = gui_stall(data, OUT / f"preprocess_{n // 1000}k_gui.h5ad")
        print(
            f"GUI thread while run_preprocess_process ran on {n:,} cells ({seconds:.1f} s, "
            f"{n_ticks:,} ticks of 10 ms): longest gap {gap:.0f} ms (target < 100 ms)"
        )


if __name__ == "__main__":
    main()
