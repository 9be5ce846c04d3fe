"""Benchmark: cell sentences, C2S Desktop vs cell2sentence 1.2.0, same data, same run.

Part 1 (in memory vs in memory + I/O): a synthetic h5ad of ``--cells`` × ``--genes`` with about
``--nnz`` expressed genes per cell. Reference: cell2sentence's ``generate_sentences`` on the
loaded AnnData (no I/O; its per-cell loop; top-200 = full sentence then truncated, as the package
does). Ours: open the file, rank, write the CSV (I/O included), for full and top-200 sentences.

Part 2 (large, backed): ``--large-cells`` × ``--large-genes`` with ~``--large-nnz`` per cell,
generated once into ``bench/out/`` (about 12 GB for the default 1M cells), top-200 sentences
through the ``c2s sentences`` command in a child process: wall time and peak RSS.

Usage: python bench/sentences.py [--cells 100000] [--skip-large] [--large-cells 1000000]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

OUT = Path(__file__).parent / "out"


def write_synthetic(path: Path, n_cells: int, n_genes: int, nnz: int, seed: int = 0) -> Path:
    """Write a CSR h5ad of integer-valued float32 counts, block by block (bounded memory)."""
    if path.exists():
        return path
    from anndata.io import write_elem

    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".part")
    gene_rate = rng.gamma(0.6, 1.0, n_genes)  # some genes common, most rare
    gene_p = gene_rate / gene_rate.sum()
    with h5py.File(tmp, "w") as f:
        f.attrs["encoding-type"] = "anndata"
        f.attrs["encoding-version"] = "0.1.0"
        write_elem(f, "obs", pd.DataFrame(index=[f"cell{i}" for i in range(n_cells)]))
        write_elem(f, "var", pd.DataFrame(index=[f"GENE{i}" for i in range(n_genes)]))
        g = f.create_group("X")
        g.attrs["encoding-type"] = "csr_matrix"
        g.attrs["encoding-version"] = "0.1.0"
        g.attrs["shape"] = (n_cells, n_genes)
        # Files that fit in memory are written as anndata writes them (one chunked dataset
        # each, in one go); larger ones are appended block by block into resizable datasets.
        contiguous = n_cells * nnz * 8 < 4 * 1024**3
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        if not contiguous:
            data = g.create_dataset("data", (0,), np.float32, maxshape=(None,), chunks=(1 << 20,))
            idx = g.create_dataset("indices", (0,), np.int32, maxshape=(None,), chunks=(1 << 20,))
        indptr = np.zeros(n_cells + 1, dtype=np.int64)
        block = 10_000
        for start in range(0, n_cells, block):
            rows = min(block, n_cells - start)
            draws = rng.choice(n_genes, size=(rows, int(nnz * 1.08)), p=gene_p)
            draws.sort(axis=1)
            keep = np.ones_like(draws, dtype=bool)
            keep[:, 1:] = draws[:, 1:] != draws[:, :-1]
            cols = draws[keep].astype(np.int32)
            counts = keep.sum(axis=1)
            vals = (rng.geometric(0.45, len(cols))).astype(np.float32)
            lo = indptr[start]
            indptr[start + 1 : start + rows + 1] = lo + np.cumsum(counts)
            hi = indptr[start + rows]
            if contiguous:
                parts.append((vals, cols))
            else:
                data.resize((hi,))
                idx.resize((hi,))
                data[lo:hi] = vals
                idx[lo:hi] = cols
            print(f"  generated {start + rows:,}/{n_cells:,} cells", end="\r", file=sys.stderr)
        if contiguous:
            # as anndata writes them: chunked (resizable), uncompressed, in one go
            for key, j in (("data", 0), ("indices", 1)):
                values = np.concatenate([p[j] for p in parts])
                g.create_dataset(key, data=values, maxshape=(None,))
        g.create_dataset("indptr", data=indptr)
    os.replace(tmp, path)
    print(file=sys.stderr)
    return path


def reference_generate_sentences():
    """cell2sentence 1.2.0's generate_sentences, or a faithful copy of its loop if absent."""
    try:
        from cell2sentence.utils import generate_sentences, generate_vocabulary

        return "cell2sentence 1.2.0 generate_sentences", generate_sentences, generate_vocabulary
    except ImportError:
        from collections import OrderedDict

        from scipy import sparse
        from sklearn.utils import shuffle

        def generate_vocabulary(adata):
            sums = np.ravel(np.sum(adata.X > 0, axis=0))
            return OrderedDict((n.upper(), sums[i]) for i, n in enumerate(adata.var_names))

        def generate_sentences(adata, vocab, delimiter=" ", random_state=42):
            np.random.seed(random_state)
            mat = sparse.csr_matrix(adata.X)
            enc_map = list(vocab.keys())
            out = []
            for i in range(mat.shape[0]):
                cols = mat.indices[mat.indptr[i] : mat.indptr[i + 1]]
                vals = mat.data[mat.indptr[i] : mat.indptr[i + 1]]
                cols, vals = shuffle(cols, vals)
                order = cols[np.argsort(-vals, kind="stable")]
                out.append(delimiter.join([enc_map[x] for x in order]))
            return out

        return (
            "copy of cell2sentence 1.2.0's per-cell loop",
            generate_sentences,
            generate_vocabulary,
        )


def run_ours(path: Path, out: Path, top_k: int | None) -> float:
    from c2s_desktop.core.dataset import open_dataset
    from c2s_desktop.core.sentence_csv import write_sentences_csv

    t0 = time.perf_counter()
    with open_dataset(path) as ds:
        write_sentences_csv(ds, out, top_k=top_k)
    return time.perf_counter() - t0


def part1(args: argparse.Namespace) -> None:
    import anndata as ad

    OUT.mkdir(exist_ok=True)
    path = write_synthetic(
        OUT / f"synthetic_{args.cells}x{args.genes}_{args.nnz}.h5ad",
        args.cells,
        args.genes,
        args.nnz,
    )
    label, gen_sentences, gen_vocab = reference_generate_sentences()
    adata = ad.read_h5ad(path)
    nnz_cell = adata.X.nnz / adata.n_obs
    print(
        f"\n## Cell sentences: {adata.n_obs:,} cells × {adata.n_vars:,} genes, "
        f"{nnz_cell:,.0f} expressed genes per cell, {os.cpu_count()} cores"
    )
    print(f"reference: {label} (in memory, no I/O)")
    t0 = time.perf_counter()
    ref = gen_sentences(adata, gen_vocab(adata))
    t_ref_full = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_top = [" ".join(s.split(" ")[:200]) for s in ref]
    t_ref_top = t_ref_full + time.perf_counter() - t0
    del ref, ref_top, adata
    t_full = run_ours(path, OUT / "ours_full.csv", None)
    t_top = run_ours(path, OUT / "ours_top200.csv", 200)
    n = args.cells
    print(
        "\n| task | reference s | ours s (I/O incl.) | reference cells/s | ours cells/s |"
        " speed-up | target |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, tr, to, target in (
        ("full sentences", t_ref_full, t_full, 3),
        ("top-200 sentences", t_ref_top, t_top, 20),
    ):
        print(
            f"| {name} | {tr:.1f} | {to:.1f} | {n / tr:,.0f} | {n / to:,.0f} | "
            f"{tr / to:.1f}× | ≥{target}× |"
        )
    for f in ("ours_full.csv", "ours_top200.csv"):
        (OUT / f).unlink(missing_ok=True)


def part2(args: argparse.Namespace) -> None:
    OUT.mkdir(exist_ok=True)
    path = OUT / f"large_{args.large_cells}x{args.large_genes}_{args.large_nnz}.h5ad"
    t0 = time.perf_counter()
    write_synthetic(path, args.large_cells, args.large_genes, args.large_nnz, seed=1)
    size_gb = path.stat().st_size / 1e9
    ready = time.perf_counter() - t0
    print(
        f"\n## Large backed file: {args.large_cells:,} cells × {args.large_genes:,} genes, "
        f"~{args.large_nnz:,} per cell, {size_gb:.1f} GB (ready in {ready:.0f} s)"
    )
    out = OUT / "large_top200.csv"
    cmd = [
        sys.executable,
        "-m",
        "c2s_desktop.cli",
        "sentences",
        str(path),
        "-o",
        str(out),
        "--top-k",
        "200",
        "--overwrite",
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print("\n| task | wall s | peak RSS GB | target |\n|---|---|---|---|")
    rss = peak_kb / 1024**2 if peak_kb > before else float("nan")
    print(
        f"| top-200 sentences, backed ({args.large_cells:,} cells) | {wall:.1f} | {rss:.2f} | "
        "≤ 90 s, ≤ 2 GB |"
    )
    out.unlink(missing_ok=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cells", type=int, default=100_000)
    p.add_argument("--genes", type=int, default=20_000)
    p.add_argument("--nnz", type=int, default=2_000)
    p.add_argument("--large-cells", type=int, default=1_000_000)
    p.add_argument("--large-genes", type=int, default=30_000)
    p.add_argument("--large-nnz", type=int, default=1_500)
    p.add_argument("--skip-large", action="store_true")
    p.add_argument("--skip-small", action="store_true")
    args = p.parse_args()
    if not args.skip_small:
        part1(args)
    if not args.skip_large:
        part2(args)


if __name__ == "__main__":
    main()
