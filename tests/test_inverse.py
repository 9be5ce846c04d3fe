"""Inverse transform and generated-sentence post-processing vs cell2sentence 1.2.0."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from c2s_desktop.core.dataset import KIND_COUNTS, KIND_LOGNORM, open_dataset
from c2s_desktop.core.inverse import (
    InverseFit,
    expression_from_sentence,
    fit_inverse,
    fit_points,
    log10_normalize,
    postprocess_generated,
    rank_points,
)
from c2s_desktop.core.sentences import cell_sentences

utils = pytest.importorskip("cell2sentence.utils")


def reference_fit(norm: sp.csr_matrix) -> dict[str, float]:
    """cell2sentence 1.2.0's ``benchmark_expression_conversion`` steps, without its plots.

    (The function itself fails on current scikit-learn: ``r2_score(...).item()`` on a float.)
    """
    from scipy.stats import pearsonr, spearmanr
    from sklearn import linear_model, metrics

    dense = norm.todense()
    df = utils.get_benchmark_df(dense, utils.sort_transcript_counts(dense))
    x, y = "log_rank_normalized_expression", "normalized_expression"
    sel = df[x] < utils.BASE10_THRESHOLD
    reg = linear_model.LinearRegression().fit(
        df.loc[sel, x].to_numpy().reshape(-1, 1), df.loc[sel, y]
    )
    pred = reg.predict(df[x].to_numpy().reshape(-1, 1))
    return {
        "slope": float(reg.coef_[0]),
        "intercept": float(reg.intercept_),
        "r_squared": float(metrics.r2_score(df[y].values, pred)),
        "pearson_r": float(pearsonr(df[y].values, pred)[0]),
        "spearman_r": float(spearmanr(df[y].values, pred)[0]),
    }


def scanpy_normalized(counts: sp.csr_matrix, base: float | None) -> sp.csr_matrix:
    """scanpy's ``normalize_total`` (to the median total) then ``log1p`` in ``base`` (None:
    natural log), as cell2sentence's tutorials prepare the data."""
    import anndata as ad
    import scanpy as sc

    adata = ad.AnnData(X=sp.csr_matrix(counts, dtype=np.float64))
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata, base=base)
    return sp.csr_matrix(adata.X)


def test_fit_matches_cell2sentence_on_real_data(real_h5ad):
    with open_dataset(real_h5ad) as ds:
        counts = ds.matrix.rows(0, ds.n_cells)
    norm = log10_normalize(counts, KIND_COUNTS, None, None)
    ref_norm = scanpy_normalized(counts, base=10)
    np.testing.assert_allclose(norm.toarray(), ref_norm.toarray(), rtol=1e-9, atol=1e-12)
    ours = fit_points(*rank_points(norm), norm.shape[0])
    ref = reference_fit(ref_norm)
    # Only tie order differs (random upstream, alphabetical here): fits agree closely.
    assert ours.slope == pytest.approx(ref["slope"], rel=0.02)
    assert ours.intercept == pytest.approx(ref["intercept"], rel=0.02)
    assert ours.r_squared == pytest.approx(ref["r_squared"], abs=0.02)
    assert ours.pearson_r == pytest.approx(ref["pearson_r"], abs=0.02)
    assert ours.spearman_r == pytest.approx(ref["spearman_r"], abs=0.02)
    assert ours.slope < 0 and ours.r_squared > 0.5


def test_fit_inverse_on_dataset_and_log_input_agree(real_h5ad, tmp_path):
    with open_dataset(real_h5ad) as ds:
        fit_counts = fit_inverse(ds, n_cells=10_000)
        counts = ds.matrix.rows(0, ds.n_cells)
    # The same cells log-normalised by scanpy (natural log, its default) give the same fit
    # once converted to base 10.
    ln = scanpy_normalized(counts, base=None)
    from .conftest import write_h5ad

    path = write_h5ad(
        tmp_path / "ln.h5ad",
        ln.astype(np.float32),
        [f"G{i}" for i in range(ln.shape[1])],
        uns={"log1p": {"base": None}},
    )
    with open_dataset(path) as ds:
        assert ds.source.kind == KIND_LOGNORM
        fit_ln = fit_inverse(ds, n_cells=10_000)
    assert fit_ln.slope == pytest.approx(fit_counts.slope, rel=1e-3)
    assert fit_ln.intercept == pytest.approx(fit_counts.intercept, rel=1e-3)
    assert fit_counts.n_cells == 700


def test_reconstruction_matches_reference_exactly():
    genes = ["CD3E", "MS4A1", "LYZ", "B2M", "ACTB"]
    fit = InverseFit(-0.7, 2.2, 0.8, 0.9, 0.9, 10, 100)
    for sentence in ["B2M ACTB LYZ", "NOPE B2M CD3E", "LYZ LYZ ACTB", ""]:
        ref = utils.reconstruct_expression_from_cell_sentence(sentence, " ", genes, -0.7, 2.2)
        ours = expression_from_sentence(sentence, genes, fit, clip=False)
        np.testing.assert_allclose(ours, ref, rtol=1e-6)


def test_reconstruction_clips_negative_values_by_default():
    fit = InverseFit(-1.0, 1.0, 1, 1, 1, 1, 1)
    words = [f"G{i}" for i in range(200)]
    values = expression_from_sentence(" ".join(words), words, fit)
    assert values.min() == 0 and values[0] == pytest.approx(1.0)
    assert expression_from_sentence(" ".join(words), words, fit, clip=False).min() < 0


@pytest.mark.parametrize(
    "text",
    [
        "cd3e ms4a1 lyz cd3e b2m lyz lyz.",
        "FOO CD3E FOO BAR",
        "B2M",
        "ACTB ACTB ACTB ACTB",
        "LYZ CD3E B2M MS4A1 LYZ B2M XX CD3E",
    ],
)
def test_postprocess_matches_reference(text):
    vocab = ["CD3E", "MS4A1", "LYZ", "B2M", "ACTB"]
    ref, n_ref = utils.post_process_generated_cell_sentences(text.rstrip("."), vocab)
    ours = postprocess_generated(text, vocab)
    assert ours.genes == [g for g in ref if g != "NOT_A_GENE"]
    assert ours.n_invalid == n_ref
    assert len(ours.genes) == len(set(ours.genes))


def test_round_trip_sentence_to_expression_preserves_order(real_h5ad):
    with open_dataset(real_h5ad) as ds:
        fit = fit_inverse(ds)
        sentence = cell_sentences(ds, rows=np.array([0]), top_k=50)[0]
        genes = list(ds.vocabulary.words)
    values = expression_from_sentence(sentence, genes, fit)
    order = [genes[i] for i in np.argsort(-values, kind="stable")[:50]]
    assert order == sentence.split(" ")


def test_fit_needs_expressed_genes():
    from c2s_desktop.core.errors import DataError

    with pytest.raises(DataError):
        fit_points(np.zeros(3), np.zeros(3), 1)
