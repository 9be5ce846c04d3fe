"""Qt-free core behind the explorer: log-normalisation, gene values, PCA, top genes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from c2s_desktop.core.dataset import KIND_COUNTS, KIND_LOGNORM, open_dataset
from c2s_desktop.core.embedding import (
    compute_pca,
    gene_column,
    gene_expression,
    gene_names,
    log_normalized,
    randomized_pca,
)
from c2s_desktop.core.errors import Cancelled, DataError
from c2s_desktop.core.markers import top_genes


@pytest.fixture(scope="module")
def pbmc():
    from tests.conftest import REAL_H5AD

    with open_dataset(REAL_H5AD) as ds:
        yield ds


def test_log_normalized_scales_counts_and_keeps_lognorm():
    counts = sp.csr_matrix(np.array([[1, 3, 0], [0, 0, 0]], dtype=np.int32))
    out = log_normalized(counts, KIND_COUNTS).toarray()
    assert np.allclose(out[0], np.log1p([2500, 7500, 0])) and not out[1].any()
    assert np.array_equal(log_normalized(counts, KIND_LOGNORM).toarray(), counts.toarray())


def test_gene_expression_matches_dense_computation(pbmc):
    dense = pbmc.matrix.rows(0, pbmc.n_cells).toarray().astype(np.float64)
    col = gene_column(pbmc, "cd79a")  # case-insensitive
    expected = np.log1p(dense[:, col] / dense.sum(axis=1) * 1e4)
    got = gene_expression(pbmc, "CD79A", chunk_rows=128)
    assert np.allclose(got, expected, rtol=1e-5)
    assert "CD79A" in gene_names(pbmc)


def test_unknown_gene_is_a_user_error(pbmc):
    with pytest.raises(DataError, match="no gene 'NOPE'"):
        gene_expression(pbmc, "NOPE")


def test_randomized_pca_matches_exact_svd():
    rng = np.random.default_rng(1)
    factors = rng.standard_normal((300, 3)) * [9.0, 5.0, 3.0]
    x = factors @ rng.standard_normal((3, 40)) + rng.standard_normal((300, 40)) * 0.1
    x = sp.csr_matrix(np.where(np.abs(x) > 1, x, 0))
    mean = np.asarray(x.mean(axis=0)).ravel()
    axes = randomized_pca(sp.csr_matrix(x), mean, 3, rng)
    _, _, vt = np.linalg.svd(x.toarray() - mean, full_matrices=False)
    for i in range(3):
        assert abs(float(axes[i] @ vt[i])) > 0.99


def test_compute_pca_separates_cell_types_and_cancels(pbmc):
    scores = compute_pca(pbmc, 10, max_cells=400, chunk_rows=100)
    assert scores.shape == (700, 10) and scores.dtype == np.float32
    b = (pbmc.obs["cell_type"] == "CD19+ B").to_numpy()
    mono = (pbmc.obs["cell_type"] == "CD14+ Monocyte").to_numpy()
    centre = lambda m: scores[m, :2].mean(axis=0)  # noqa: E731
    assert np.linalg.norm(centre(b) - centre(mono)) > scores[:, :2].std()
    cancel = type("C", (), {"is_set": lambda self: True})()
    with pytest.raises(Cancelled):
        compute_pca(pbmc, 5, cancel=cancel)


def test_top_genes_of_b_cells_are_b_cell_markers(pbmc):
    rows = np.flatnonzero((pbmc.obs["cell_type"] == "CD19+ B").to_numpy())
    genes = top_genes(pbmc, rows, 15, chunk_rows=64)
    names = [g.gene for g in genes]
    assert {"CD79A", "MS4A1"} & set(names), names
    assert all(g.log2_fc > 0 and g.frac_in >= 0 for g in genes[:5])
    assert genes[0].difference >= genes[-1].difference


def test_top_genes_refuses_empty_or_full_selection(pbmc):
    with pytest.raises(DataError):
        top_genes(pbmc, np.arange(0))
    with pytest.raises(DataError):
        top_genes(pbmc, np.arange(pbmc.n_cells))
