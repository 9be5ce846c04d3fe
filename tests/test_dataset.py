"""Opening .h5ad files: what is detected, and clear errors for files that cannot be used."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from c2s_desktop.core.dataset import (
    HUMAN,
    KIND_COUNTS,
    KIND_LOGNORM,
    KIND_SCALED,
    MOUSE,
    open_dataset,
)
from c2s_desktop.core.errors import DataError, InputFileError
from c2s_desktop.core.sentences import cell_sentences

from .conftest import sha256, write_h5ad
from .reference import slow_sentences


def lognorm(counts: sp.csr_matrix) -> sp.csr_matrix:
    totals = np.asarray(counts.sum(axis=1)).ravel()
    scale = np.divide(1e4, totals, out=np.zeros_like(totals, dtype=float), where=totals > 0)
    out = sp.csr_matrix(sp.diags(scale) @ counts)
    out.data = np.log1p(out.data).astype(np.float32)
    return out


def test_detects_sources_and_prefers_the_rankable_one_with_most_genes(tmp_path, counts_matrix):
    import anndata as ad

    genes = [f"G{i}" for i in range(counts_matrix.shape[1])]
    full = ad.AnnData(X=lognorm(counts_matrix), var=pd.DataFrame(index=genes))
    full.layers["counts"] = counts_matrix
    full.raw = full
    scaled = full[:, :10].copy()
    scaled.X = np.asarray(scaled.X.todense()) - 0.5  # scanpy's scale(): negatives, HVGs only
    path = tmp_path / "scaled.h5ad"
    scaled.write_h5ad(path)
    with open_dataset(path) as ds:
        kinds = {s.name: s.kind for s in ds.sources.values()}
        assert kinds == {"X": KIND_SCALED, "raw": KIND_LOGNORM, "layer:counts": KIND_COUNTS}
        assert ds.source.name == "raw"  # all 25 genes, X has 10 and cannot be ranked
        assert ds.n_genes == 25
    with pytest.raises(DataError, match="cannot be ranked") as info:
        open_dataset(path, source="X")
    assert str(path) in info.value.one_line()


@pytest.mark.parametrize("fmt", ["dense", "csr", "csc"])
@pytest.mark.parametrize("backed", [False, True])
def test_all_storage_formats_give_the_same_sentences(tmp_path, counts_matrix, fmt, backed):
    genes = [f"G{i}" for i in range(counts_matrix.shape[1])]
    X = {"dense": counts_matrix.toarray(), "csr": counts_matrix, "csc": counts_matrix.tocsc()}[fmt]
    path = write_h5ad(tmp_path / f"{fmt}.h5ad", X, genes)
    with open_dataset(path, memory_threshold=0 if backed else 10**12) as ds:
        assert ds.backed is (backed and fmt != "csc")
        # anndata writes uncompressed arrays contiguously: backed CSR reads them as file regions
        assert (ds.matrix._maps is not None) is (backed and fmt == "csr")
        got = cell_sentences(ds, top_k=7)
        picked = cell_sentences(ds, rows=np.array([5, 1, 5]))
    expected = slow_sentences(counts_matrix, genes, 7)
    assert got == expected
    assert picked == [slow_sentences(counts_matrix, genes)[i] for i in (5, 1, 5)]


def test_symbol_column_is_found_when_var_names_are_ensembl(tmp_path, counts_matrix):
    n = counts_matrix.shape[1]
    var = pd.DataFrame(
        {"feature_name": [f"Sym{i}" for i in range(n)]},
        index=[f"ENSG{i:011d}" for i in range(n)],
    )
    path = write_h5ad(tmp_path / "cxg.h5ad", counts_matrix, var=var)
    with open_dataset(path) as ds:
        assert ds.symbols.source == "feature_name"
        assert ds.vocabulary.words[0] == "SYM0"


def test_ensembl_only_is_mapped_with_the_bundled_table(tmp_path):
    ids = [
        "ENSG00000167286",
        "ENSG00000156738.18",
        "ENSG00000090382",
        "ENSG00000075624",
        "ENSG99999999999",
    ]
    X = sp.csr_matrix(np.array([[1, 2, 3, 4, 5]], dtype=np.float32))
    path = write_h5ad(tmp_path / "ens.h5ad", X, ids)
    with open_dataset(path) as ds:
        assert ds.symbols.source == "ensembl-map"
        assert ds.symbols.n_mapped == 4
        assert "4 of 5" in ds.symbols.note
        assert cell_sentences(ds) == ["ACTB LYZ MS4A1 CD3D"]


def test_mouse_ensembl_ids_set_organism(tmp_path):
    ids = ["ENSMUSG00000051951", "ENSMUSG00000025900", "ENSMUSG00000025902"]
    path = write_h5ad(tmp_path / "m.h5ad", sp.csr_matrix(np.ones((2, 3), np.float32)), ids)
    with open_dataset(path) as ds:
        assert ds.organism == MOUSE and "ENSMUSG" in ds.organism_from


def test_unmappable_ensembl_ids_fail_with_hint(tmp_path):
    ids = [f"ENSG9{i:010d}" for i in range(10)]
    path = write_h5ad(tmp_path / "bad.h5ad", sp.csr_matrix(np.ones((2, 10), np.float32)), ids)
    with pytest.raises(DataError, match="Ensembl IDs") as info:
        open_dataset(path)
    assert "--symbols" in info.value.hint


def test_organism_from_obs_and_override(tmp_path, counts_matrix):
    obs = pd.DataFrame(
        {"organism": pd.Categorical(["Mus musculus"] * counts_matrix.shape[0])},
        index=[f"c{i}" for i in range(counts_matrix.shape[0])],
    )
    path = write_h5ad(tmp_path / "o.h5ad", counts_matrix, obs=obs)
    with open_dataset(path) as ds:
        assert (ds.organism, ds.organism_from) == (MOUSE, "obs['organism']")
    with open_dataset(path, organism="human") as ds:
        assert ds.organism == HUMAN
    with pytest.raises(DataError, match="unknown organism"):
        open_dataset(path, organism="Danio rerio")


def test_mouse_symbol_casing_detected(tmp_path):
    genes = ["Cd74", "Actb", "Lyz2", "Malat1"]
    path = write_h5ad(tmp_path / "m.h5ad", sp.csr_matrix(np.ones((2, 4), np.float32)), genes)
    with open_dataset(path) as ds:
        assert ds.organism == MOUSE


def test_info_lists_embeddings_and_categories(tmp_path, counts_matrix):
    n = counts_matrix.shape[0]
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(["T", "B"] * (n // 2)), "n_counts": np.arange(n, dtype=float)},
        index=[f"c{i}" for i in range(n)],
    )
    path = write_h5ad(
        tmp_path / "e.h5ad",
        counts_matrix,
        obs=obs,
        obsm={"X_umap": np.zeros((n, 2)), "X_pca": np.zeros((n, 5))},
    )
    with open_dataset(path) as ds:
        info = ds.info()
    assert info.embeddings == {"X_umap": 2, "X_pca": 5}
    assert info.obs_columns == {"cell_type": 2}


def test_input_file_is_never_modified(tmp_path, counts_matrix):
    path = write_h5ad(tmp_path / "x.h5ad", counts_matrix)
    before = sha256(path)
    with open_dataset(path, memory_threshold=0) as ds:
        cell_sentences(ds)
    assert sha256(path) == before


# -- broken files ----------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="file not found"):
        open_dataset(tmp_path / "nope.h5ad")


def test_directory_without_a_matrix(tmp_path):
    with pytest.raises(InputFileError, match=r"an empty folder without matrix\.mtx"):
        open_dataset(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputFileError, match=r"a folder without matrix\.mtx"):
        open_dataset(tmp_path)


def test_not_hdf5(tmp_path):
    p = tmp_path / "x.h5ad"
    p.write_text("cell,gene\n1,2\n")
    with pytest.raises(InputFileError, match="not an HDF5"):
        open_dataset(p)


def test_hdf5_but_not_anndata(tmp_path):
    p = tmp_path / "x.h5ad"
    with h5py.File(p, "w") as f:
        f["something"] = np.arange(3)
    with pytest.raises(InputFileError, match="neither AnnData nor Cell Ranger"):
        open_dataset(p)


def test_truncated_file(tmp_path, counts_matrix):
    p = write_h5ad(tmp_path / "x.h5ad", counts_matrix)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match="truncated or corrupt"):
        ds = open_dataset(p)
        cell_sentences(ds)


def test_zero_cells(tmp_path):
    p = write_h5ad(tmp_path / "x.h5ad", sp.csr_matrix((0, 3), dtype=np.float32), ["A", "B", "C"])
    with pytest.raises(DataError, match="0 cells"):
        open_dataset(p)


def test_negative_values_in_chosen_source(tmp_path):
    X = sp.csr_matrix(np.ones((1100, 500), dtype=np.float32))
    p = write_h5ad(tmp_path / "x.h5ad", X, [f"G{i}" for i in range(500)])
    with h5py.File(p, "r+") as f:  # a negative value the sample at open time does not see
        f["X/data"][300_000] = -1.0
    with open_dataset(p) as ds, pytest.raises(DataError, match="negative values") as info:
        cell_sentences(ds)
    assert "cell600" in info.value.message
    with h5py.File(p, "r+") as f:  # one the sample sees: refused at open
        f["X/data"][1] = -1.0
    with pytest.raises(DataError, match="can be ranked"):
        open_dataset(p)


def test_string_matrix_is_refused(tmp_path):
    p = write_h5ad(tmp_path / "x.h5ad", np.ones((2, 2), np.float32), ["A", "B"])
    with h5py.File(p, "r+") as f:
        del f["X"]
        f.create_dataset("X", data=np.array([[b"a", b"b"], [b"c", b"d"]]))
    with pytest.raises(DataError, match="no expression source can be ranked"):
        open_dataset(p)


def test_raw_borrows_symbol_column_from_var(tmp_path, counts_matrix):
    # CELLxGENE layout: var_names are Ensembl IDs, symbols in var['feature_name'], raw.var has
    # only the index; X is log-normalised, raw.X the counts.
    import anndata as ad

    n = counts_matrix.shape[1]
    ids = [f"ENSG{i:011d}" for i in range(n)]
    var = pd.DataFrame({"feature_name": pd.Categorical([f"Sym{i}" for i in range(n)])}, index=ids)
    adata = ad.AnnData(X=lognorm(counts_matrix), var=var)
    adata.raw = ad.AnnData(X=counts_matrix, var=pd.DataFrame(index=ids))
    path = tmp_path / "cxg.h5ad"
    adata.write_h5ad(path)
    with open_dataset(path, source="raw") as ds:
        assert ds.symbols.source == "feature_name"
        raw_sentences = cell_sentences(ds)
    with open_dataset(path, source="X") as ds:
        assert cell_sentences(ds) == raw_sentences


def test_legacy_anndata_05_file_opens_and_matches_counts(real_h5ad):
    legacy = real_h5ad.parent / "legacy_anndata_0.5.h5ad"
    with open_dataset(legacy) as ds:
        assert ds.sources["X"].kind == KIND_SCALED
        assert ds.source.name == "raw" and ds.source.kind == KIND_LOGNORM
        assert ds.embedding_names() == {"X_pca": 50, "X_umap": 2}
        assert ds.categorical_obs()["bulk_labels"] == 10
        from_log = cell_sentences(ds)
    with open_dataset(real_h5ad) as ds:
        # Counts were recovered from this log-normalised matrix: the ranking is the same.
        assert cell_sentences(ds) == from_log


def test_open_reports_progress_and_can_be_cancelled(real_h5ad):
    import threading

    from c2s_desktop.core.errors import Cancelled

    seen: list[str] = []
    with open_dataset(real_h5ad, progress=lambda f, m: seen.append(m)):
        pass
    assert seen[0].startswith("reading cell annotations") and seen[-1] == "opened"
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        open_dataset(real_h5ad, cancel=cancel)


def test_float16_and_unknown_organism(tmp_path, counts_matrix):
    n = counts_matrix.shape[0]
    obs = pd.DataFrame({"organism": ["zebrafish"] * n}, index=[f"c{i}" for i in range(n)])
    path = write_h5ad(tmp_path / "h.h5ad", counts_matrix.toarray().astype(np.float16), obs=obs)
    with open_dataset(path) as ds:
        assert ds.organism == HUMAN and any("zebrafish" in w for w in ds.warnings)
        genes = [f"GENE{i}" for i in range(counts_matrix.shape[1])]
        assert cell_sentences(ds) == slow_sentences(counts_matrix, genes)
