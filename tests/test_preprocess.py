"""Preprocessing: QC → filters → normalisation → HVG → PCA → neighbours → UMAP → Leiden → markers.

The pipeline runs once per module on the bundled 700 real PBMCs (``c2s preprocess``) and is
compared with a plain scanpy script with the same parameters and seed.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score

from c2s_desktop.core.dataset import open_dataset
from c2s_desktop.core.errors import Cancelled, DataError, OutputError
from c2s_desktop.core.preprocess import (
    CLUSTER_KEY,
    PREPROCESS_KEY,
    QC_COLUMNS,
    PreprocessOptions,
    passing_cells,
    preprocess_file,
    qc_metrics,
    removed_by_filter,
    run_preprocess_process,
)
from c2s_desktop.core.sentences import cell_sentences

from .conftest import REAL_H5AD, sha256, write_h5ad
from .helpers import run_cli

DEMO = Path(__file__).parents[1] / "resources" / "demo" / "pbmc_demo.h5ad"
ARGS = {"min_genes": 200, "min_cells": 30, "n_pcs": 30, "resolution": 1.0, "seed": 0}


def plain_scanpy(path: Path, min_genes: int, min_cells: int, n_pcs: int, resolution: float,
                 seed: int) -> ad.AnnData:  # fmt: skip
    """The scanpy tutorial's steps, written as a user would (the reference)."""
    adata = sc.read_h5ad(path)
    adata.var["mt"] = adata.var_names.str.startswith("MT-")
    adata.var["ribo"] = adata.var_names.str.startswith(("RPS", "RPL"))
    sc.pp.calculate_qc_metrics(adata, qc_vars=["mt", "ribo"], percent_top=None, inplace=True)
    sc.pp.filter_cells(adata, min_genes=min_genes)
    sc.pp.filter_genes(adata, min_cells=min_cells)
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    sc.pp.highly_variable_genes(adata, n_top_genes=2000)
    sc.tl.pca(adata, n_comps=n_pcs, random_state=seed)
    sc.pp.neighbors(adata, n_neighbors=15, n_pcs=n_pcs, random_state=seed)
    sc.tl.leiden(
        adata,
        resolution=resolution,
        random_state=seed,
        flavor="igraph",
        n_iterations=2,
        directed=False,
    )
    return adata


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("prep") / "pbmc_prepared.h5ad"
    before = sha256(DEMO)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in ARGS.items()]
    code, stdout, stderr = run_cli("preprocess", DEMO, "-o", out, *flags, "--labels", "louvain")
    return {
        "path": out,
        "code": code,
        "out": stdout,
        "err": stderr,
        "input_sha_before": before,
        "adata": ad.read_h5ad(out) if code == 0 else None,
        "reference": plain_scanpy(DEMO, **ARGS),
    }


def test_clusters_equal_plain_scanpy_and_ari_is_reported(prepared):
    assert prepared["code"] == 0, prepared["err"]
    mine, ref = prepared["adata"], prepared["reference"]
    assert list(mine.obs_names) == list(ref.obs_names)
    assert mine.n_obs < 700  # --min-genes 200 removed some cells
    # the same partition, label for label
    assert np.array_equal(mine.obs[CLUSTER_KEY].astype(str), ref.obs["leiden"].astype(str))
    expected = adjusted_rand_score(ref.obs["cell_type"].astype(str), ref.obs["leiden"])
    ari = mine.uns[PREPROCESS_KEY]["ari"]
    assert ari["cell_type"] == pytest.approx(expected, abs=1e-6)
    assert set(ari) == {"cell_type", "louvain"}
    assert f"adjusted Rand index vs cell_type: {expected:.3f}" in prepared["out"]
    assert f"clusters (leiden): {ref.obs['leiden'].nunique()}" in prepared["out"]
    assert np.allclose(mine.obsm["X_pca"], ref.obsm["X_pca"], atol=1e-4)


def test_prepared_file_holds_scanpy_results_and_provenance(prepared):
    a = prepared["adata"]
    for key in ("pca", "neighbors", "umap", "leiden", "log1p", "hvg", "rank_genes_groups"):
        assert key in a.uns, key
    assert a.uns["rank_genes_groups"]["params"]["method"] == "wilcoxon"
    assert a.uns["rank_genes_groups"]["params"]["groupby"] == CLUSTER_KEY
    assert {"X_pca", "X_umap"} <= set(a.obsm) and a.obsm["X_umap"].shape == (a.n_obs, 2)
    assert {"connectivities", "distances"} <= set(a.obsp)
    assert set(QC_COLUMNS) <= set(a.obs.columns)
    assert isinstance(a.obs[CLUSTER_KEY].dtype, pd.CategoricalDtype)
    assert a.obs[CLUSTER_KEY].cat.categories[0] == "0"
    # X = log1p(normalize_total(counts)) of the genes in >= 30 cells; raw = every gene's counts
    counts = a.layers["counts"]
    assert a.n_vars < a.raw.n_vars == 765
    assert np.all(np.asarray((counts > 0).sum(axis=0)).ravel() >= 30)
    total = np.asarray(counts.sum(axis=1)).ravel()
    median = np.median(total)
    expected = np.log1p(counts.toarray() / total[:, None] * median)
    assert np.allclose(a.X.toarray(), expected, rtol=1e-4, atol=1e-5)
    assert sp.issparse(a.raw.X) and a.raw.X.dtype.kind == "i"
    src = ad.read_h5ad(DEMO)
    assert np.array_equal(
        a.raw.X.toarray(), src[a.obs_names].X.toarray()
    )  # counts of the kept cells
    assert list(a.raw.var_names) == list(src.var_names)
    rec = a.uns[PREPROCESS_KEY]
    assert rec["counts_source"] == "raw" and rec["input"] == DEMO.name
    assert rec["input_sha256"] == prepared["input_sha_before"]
    assert rec["options"]["min_genes"] == 200 and rec["options"]["n_top_genes"] == 2000
    assert rec["n_cells_in"] == 700 and rec["n_cells_kept"] == a.n_obs
    assert rec["cells_removed"]["min_genes"] == 700 - a.n_obs
    assert rec["genes_removed"]["min_cells"] == 765 - a.n_vars
    assert rec["mito_prefix"] == "MT-" and rec["n_mito_genes"] >= 1
    assert {"scanpy", "anndata", "igraph"} <= set(rec["versions"])
    assert set(rec["seconds"]) >= {"qc", "pca", "umap", "leiden", "markers"}
    assert rec["organism"] == "Homo sapiens"


def test_sentences_from_prepared_file_equal_the_inputs(prepared):
    with open_dataset(prepared["path"]) as ds:
        assert ds.source.name == "raw"  # uns['c2s_preprocess']['counts_source']
        ids = list(ds.cell_ids)
        after = cell_sentences(ds)
    with open_dataset(DEMO) as src:
        position = {c: i for i, c in enumerate(src.cell_ids)}
        before = cell_sentences(src, rows=np.array([position[c] for c in ids]))
    assert after == before and len(after) == len(ids)


def test_input_is_byte_identical(prepared):
    assert sha256(DEMO) == prepared["input_sha_before"]


def test_audit_entry(tmp_path, audit_log):
    # a failing run is audited too (the successful one ran in the module fixture)
    code, _, _ = run_cli("preprocess", REAL_H5AD, "-o", tmp_path / "x.h5ad", "--min-genes", 10**6)
    assert code == 2
    entry = audit_log.read_text().splitlines()[-1]
    assert '"task": "preprocess"' in entry and '"status": "failed"' in entry


# -- bad input: exit 2, one line, nothing written ------------------------------------------------
def _only(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


@pytest.mark.parametrize("kind", ["scaled", "log-normalised"])
def test_no_counts_is_one_line_error(tmp_path, kind):
    rng = np.random.default_rng(0)
    if kind == "scaled":  # cannot even be ranked
        x = rng.normal(size=(40, 30)).astype(np.float32)
        expected = "no expression source can be ranked"
    else:  # sentences work, QC does not
        x = np.log1p(rng.poisson(2, size=(40, 30)) * 1.7).astype(np.float32)
        expected = "no raw counts for quality control: X: log-normalised values"
    data = write_h5ad(tmp_path / "data.h5ad", sp.csr_matrix(x))
    before = sha256(data)
    code, stdout, stderr = run_cli("preprocess", data, "-o", tmp_path / "out.h5ad")
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and str(data) in lines[0]
    assert _only(data) == ["data.h5ad"] and sha256(data) == before


def test_thresholds_removing_every_cell(tmp_path):
    out = tmp_path / "out.h5ad"
    code, _, stderr = run_cli("preprocess", REAL_H5AD, "-o", out, "--min-genes", 5000)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1
    assert "remove every cell" in lines[0] and "min_genes removed 700" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "out.h5ad"
    out.write_bytes(b"keep me")
    code, _, stderr = run_cli("preprocess", REAL_H5AD, "-o", out)
    assert code == 2 and "already exists" in stderr and len(stderr.strip().splitlines()) == 1
    assert out.read_bytes() == b"keep me" and _only(out) == ["out.h5ad"]
    with pytest.raises(OutputError, match="is the input file"):
        preprocess_file(out, out, overwrite=True)


def test_unknown_label_column(tmp_path):
    code, _, stderr = run_cli(
        "preprocess", REAL_H5AD, "-o", tmp_path / "o.h5ad", "--labels", "nope"
    )
    assert code == 2 and "no obs column 'nope'" in stderr
    assert list(tmp_path.iterdir()) == []


# -- QC metrics and the filter rule ---------------------------------------------------------------
def test_qc_metrics_equal_scanpy_and_filter_rule():
    with open_dataset(REAL_H5AD) as ds:
        qc = qc_metrics(ds)
    ref = sc.read_h5ad(REAL_H5AD)
    ref.var["mt"] = ref.var_names.str.startswith("MT-")
    ref.var["ribo"] = ref.var_names.str.startswith(("RPS", "RPL"))
    sc.pp.calculate_qc_metrics(ref, qc_vars=["mt", "ribo"], percent_top=None, inplace=True)
    for col in QC_COLUMNS:
        assert np.allclose(getattr(qc, col), ref.obs[col].to_numpy()), col
    assert qc.source == "X" and qc.mito_prefix == "MT-" and qc.n_mito_genes == 1
    opts = PreprocessOptions(min_genes=250, max_genes=400, max_pct_mt=1.0)
    keep = passing_cells(qc, opts)
    n = qc.n_genes_by_counts
    assert np.array_equal(keep, (n >= 250) & (n <= 400) & (qc.pct_counts_mt <= 1.0))
    removed = removed_by_filter(qc, opts)
    assert sum(removed.values()) == int((~keep).sum())
    assert removed["min_genes"] == int((n < 250).sum())


def test_counts_come_from_raw_when_x_is_log_normalised(tmp_path):
    src = ad.read_h5ad(REAL_H5AD)
    counts = src.X.copy()
    lognorm = ad.AnnData(X=counts.astype(np.float32), obs=src.obs, var=src.var)
    sc.pp.normalize_total(lognorm)
    sc.pp.log1p(lognorm)
    lognorm.raw = ad.AnnData(X=counts, obs=src.obs, var=src.var)
    path = tmp_path / "lognorm.h5ad"
    lognorm.write_h5ad(path)
    with open_dataset(path, source="X") as ds:
        qc = qc_metrics(ds)
    assert qc.source == "raw"
    assert np.array_equal(qc.total_counts, np.asarray(counts.sum(axis=1)).ravel())


def test_mouse_mito_prefix(tmp_path):
    rng = np.random.default_rng(1)
    genes = ["mt-Co1", "mt-Nd1", "Rps3", "Rpl7", "Cd74", "Actb", "Malat1", "Ptprc"]
    x = sp.csr_matrix(rng.poisson(3, size=(30, len(genes))).astype(np.int32))
    path = write_h5ad(tmp_path / "mouse.h5ad", x, genes)
    with open_dataset(path) as ds:
        qc = qc_metrics(ds)
    assert qc.mito_prefix == "mt-" and qc.n_mito_genes == 2
    dense = x.toarray()
    pct = 100 * dense[:, :2].sum(axis=1) / dense.sum(axis=1)
    assert np.allclose(qc.pct_counts_mt, pct)
    assert np.allclose(qc.pct_counts_ribo, 100 * dense[:, 2:4].sum(axis=1) / dense.sum(axis=1))


# -- in a child process ---------------------------------------------------------------------------
@pytest.mark.slow
def test_child_process_runs_and_relays_progress_and_errors(tmp_path):
    messages: list[str] = []
    out = tmp_path / "child.h5ad"
    summary = run_preprocess_process(
        REAL_H5AD,
        out,
        PreprocessOptions(n_pcs=20),
        progress=lambda f, m: messages.append(m),
    )
    assert summary.output == out and out.exists() and summary.n_cells_kept == 700
    assert summary.n_clusters >= 2 and "cell_type" in summary.ari
    assert any("UMAP" in m for m in messages) and _only(out) == ["child.h5ad"]
    with pytest.raises(DataError, match="remove every cell") as info:
        run_preprocess_process(REAL_H5AD, tmp_path / "none.h5ad", PreprocessOptions(10**6))
    assert info.value.path == str(REAL_H5AD)
    assert _only(out) == ["child.h5ad"]


def test_child_process_cancel_is_quick_and_leaves_nothing(tmp_path):
    cancel = threading.Event()
    started: list[float] = []

    def progress(fraction: float, message: str) -> None:
        if "UMAP" in message or "neighbour" in message:
            started.append(time.perf_counter())
            cancel.set()

    t0 = time.perf_counter()
    with pytest.raises(Cancelled):
        run_preprocess_process(REAL_H5AD, tmp_path / "c.h5ad", progress=progress, cancel=cancel)
    assert started, "cancel was never requested"
    assert time.perf_counter() - started[0] < 1.5
    assert time.perf_counter() - t0 < 120
    assert list(tmp_path.iterdir()) == []


def test_child_process_killed_is_an_error_not_a_hang(tmp_path):
    import multiprocessing
    import signal

    def progress(fraction: float, message: str) -> None:
        for child in multiprocessing.active_children():
            if child.name == "c2s-preprocess":
                os.kill(child.pid, signal.SIGKILL)  # as the out-of-memory killer would

    with pytest.raises(DataError, match="ended unexpectedly"):
        run_preprocess_process(REAL_H5AD, tmp_path / "k.h5ad", progress=progress)
    assert list(tmp_path.iterdir()) == []
