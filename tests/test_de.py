"""Marker genes (scanpy Wilcoxon, BH) and dot-plot tables, on the 700 real PBMCs."""

from __future__ import annotations

import csv
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scanpy as sc

from c2s_desktop.core.dataset import open_dataset
from c2s_desktop.core.de import (
    MARKER_COLUMNS,
    dot_plot_table,
    expression_anndata,
    rank_markers,
    top_markers_per_group,
)
from c2s_desktop.core.errors import DataError
from c2s_desktop.core.preprocess import CLUSTER_KEY, PreprocessOptions, preprocess_file

from .conftest import REAL_H5AD, sha256
from .helpers import run_cli

B_CELLS = "CD19+ B"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("de") / "prepared.h5ad"
    preprocess_file(REAL_H5AD, out, PreprocessOptions(n_pcs=20))
    return out


def test_b_cells_vs_rest_find_b_cell_markers():
    with open_dataset(REAL_H5AD) as ds:
        rows = np.flatnonzero(ds.obs["cell_type"].astype(str) == B_CELLS)
        table = rank_markers(ds, rows=rows, n_genes=10)
    assert list(table.columns) == list(MARKER_COLUMNS)
    assert len(table) == 10 and set(table["group"]) == {"selection"}
    assert list(table["rank"]) == list(range(1, 11))
    top = list(table["gene"])
    assert "CD79A" in top[:3] and "MS4A1" in top and "CD79B" in top
    assert (table["pval_adj"] >= table["pval"]).all() and (table["pval_adj"] <= 1).all()
    assert table["score"].is_monotonic_decreasing
    assert table["pct_group"].between(0, 1).all() and table["pct_rest"].between(0, 1).all()
    cd79a = table.set_index("gene").loc["CD79A"]
    assert cd79a["logfoldchange"] > 2 and cd79a["pct_group"] > 0.9 > 0.2 > cd79a["pct_rest"]


def test_every_group_vs_rest_and_dot_plot_genes():
    with open_dataset(REAL_H5AD) as ds:
        table = rank_markers(ds, groupby="cell_type", n_genes=5)
        n_groups = ds.obs["cell_type"].nunique()
    assert len(table) == 5 * n_groups
    assert table.groupby("group")["rank"].apply(list).map(lambda r: r == [1, 2, 3, 4, 5]).all()
    b = table[table["group"] == B_CELLS]
    assert "CD79A" in set(b["gene"])
    genes = top_markers_per_group(table, n=2)
    assert len(genes) == len(set(genes)) <= 2 * n_groups
    assert genes[:2] == list(table[table["group"] == table["group"].iloc[0]]["gene"][:2])


def test_values_are_log_normalised_counts_and_dot_plot_table():
    with open_dataset(REAL_H5AD) as ds:
        adata = expression_anndata(ds)
        frac, mean = dot_plot_table(ds, "cell_type", ["MS4A1", "cd79a", "CD3D"])
    ref = sc.read_h5ad(REAL_H5AD)
    sc.pp.normalize_total(ref)
    sc.pp.log1p(ref)
    assert np.allclose(adata.X.toarray(), ref.X.toarray(), atol=1e-6)
    assert list(frac.columns) == ["MS4A1", "CD79A", "CD3D"] and frac.shape == mean.shape
    in_b = (ref.obs["cell_type"] == B_CELLS).to_numpy()
    x = ref[:, "CD79A"].X.toarray().ravel()
    assert frac.loc[B_CELLS, "CD79A"] == pytest.approx((x[in_b] > 0).mean())
    assert mean.loc[B_CELLS, "CD79A"] == pytest.approx(x[in_b].mean(), rel=1e-5)
    assert mean["MS4A1"].idxmax() == B_CELLS and frac["CD3D"].idxmax() != B_CELLS


def test_prepared_file_uses_its_x_and_matches_scanpys_markers(prepared):
    with open_dataset(prepared) as ds:
        assert ds.source.name == "raw"
        adata = expression_anndata(ds)
        table = rank_markers(ds, n_genes=5)  # groupby defaults to leiden
    stored = ad.read_h5ad(prepared)
    assert np.allclose(adata.X.toarray(), stored.X.toarray())
    assert set(table["group"]) == set(stored.obs[CLUSTER_KEY].cat.categories)
    names = stored.uns["rank_genes_groups"]["names"]
    for group in ("0", "1"):
        assert list(table[table["group"] == group]["gene"]) == list(names[group][:5])


def test_bad_requests():
    with open_dataset(REAL_H5AD) as ds:
        with pytest.raises(DataError, match="no obs column 'nope'"):
            rank_markers(ds, groupby="nope")
        with pytest.raises(DataError, match="no groups given"):
            rank_markers(ds)  # no leiden column in an unprepared file
        with pytest.raises(DataError, match="at least 2 selected"):
            rank_markers(ds, rows=np.array([3]))
        with pytest.raises(DataError, match="at least 2 selected"):
            rank_markers(ds, rows=np.arange(ds.n_cells))
        with pytest.raises(DataError, match="no gene NOTAGENE"):
            dot_plot_table(ds, "cell_type", ["CD3D", "NOTAGENE"])


def test_markers_command(prepared, tmp_path):
    before = sha256(prepared)
    code, out, err = run_cli("markers", prepared, "-n", "3")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].split("\t") == list(MARKER_COLUMNS)
    assert lines[1].split("\t")[:2] == ["0", "1"]
    csv_path = tmp_path / "b.csv"
    code, _, err = run_cli(
        "markers", REAL_H5AD, "--cells", f"cell_type={B_CELLS}", "-n", "5", "-o", csv_path
    )
    assert code == 0, err
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5 and rows[0]["group"] == "selection" and rows[0]["gene"] == "CD79A"
    code, _, err = run_cli("markers", REAL_H5AD, "--groupby", "cell_type", "-o", csv_path)
    assert code == 2 and "already exists" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("markers", REAL_H5AD, "--groupby", "x", "--cells", "a=b")
    assert code == 2 and "not both" in err
    assert sha256(prepared) == before
