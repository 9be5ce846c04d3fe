"""The rank transform against an obviously-correct reference and known upstream defects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from c2s_desktop.core.genes import GeneSymbols, build_vocabulary
from c2s_desktop.core.sentences import (
    InvalidValues,
    SentenceEncoder,
    rank_words,
    sentences_from_matrix,
    to_word_matrix,
)

from .reference import slow_sentences


def vocab_for(genes: list[str], merge: bool = True):
    symbols = GeneSymbols(np.array(genes, dtype=object), "var_names", len(genes), len(genes))
    return build_vocabulary(symbols, merge_duplicates=merge, path="test.h5ad")


def test_orders_by_descending_value_with_alphabetical_ties():
    genes = ["b", "A", "c", "d"]
    X = np.array([[1, 3, 1, 0], [0, 0, 0, 0], [2, 2, 5, 2]], dtype=np.float32)
    assert sentences_from_matrix(X, vocab_for(genes)) == ["A B C", "", "C A B D"]


def test_top_k_is_prefix_of_full_sentence():
    genes = [f"g{i}" for i in range(50)]
    rng = np.random.default_rng(0)
    X = sp.random(30, 50, density=0.5, random_state=1, data_rvs=lambda n: rng.integers(1, 4, n))
    vocab = vocab_for(genes)
    full = sentences_from_matrix(X, vocab)
    for k in (1, 5, 17):
        top = sentences_from_matrix(X, vocab, top_k=k)
        assert top == [" ".join(s.split(" ")[:k]) if s else "" for s in full]


def test_explicit_zeros_are_not_words():
    X = sp.csr_matrix(
        (np.array([0.0, 2.0, 0.0], np.float32), np.array([0, 1, 2]), np.array([0, 3])), shape=(1, 3)
    )
    assert X.nnz == 3  # the zeros are stored
    assert sentences_from_matrix(X, vocab_for(["A", "B", "C"])) == ["B"]


def test_case_collisions_become_one_word_and_keep_alignment():
    # Real 10x hg19 data holds both C1orf220 and C1ORF220: cell2sentence 1.2.0 misaligns every
    # gene after them. Here they become one word (values summed) and later genes stay correct.
    genes = ["AAA", "C1orf220", "C1ORF220", "ZZZ", "MMM"]
    X = np.array([[1, 2, 2, 3, 5]], dtype=np.float32)
    assert sentences_from_matrix(X, vocab_for(genes, merge=False)) == ["MMM C1ORF220 ZZZ AAA"]


def test_exact_duplicate_names_are_an_error_unless_merged():
    from c2s_desktop.core.errors import DataError

    with pytest.raises(DataError, match="occur more than once"):
        vocab_for(["A", "B", "A"], merge=False)
    X = np.array([[1, 1, 1]], dtype=np.float32)
    assert sentences_from_matrix(X, vocab_for(["A", "B", "A"], merge=True)) == ["A B"]


def test_genes_without_symbol_are_left_out():
    X = np.array([[5, 4, 3]], dtype=np.float32)
    assert sentences_from_matrix(X, vocab_for(["A", "", "C"])) == ["A C"]


@pytest.mark.parametrize(
    "bad, what", [(np.nan, "NaN"), (np.inf, "NaN or infinite"), (-1.0, "negative")]
)
def test_invalid_values_are_reported_with_their_cell(bad, what):
    X = sp.csr_matrix(np.array([[1, 2], [3, bad]], dtype=np.float32))
    with pytest.raises(InvalidValues) as info:
        to_word_matrix(X, vocab_for(["A", "B"]))
    assert info.value.row == 1 and what.split()[0] in info.value.what


def test_float64_values_closer_than_float32_keep_exact_order():
    X = sp.csr_matrix(np.array([[1.0, 1.0 + 1e-12, 0.5]], dtype=np.float64))
    assert sentences_from_matrix(X, vocab_for(["A", "B", "C"])) == ["B A C"]


def test_huge_integer_counts_keep_exact_order():
    X = sp.csr_matrix(np.array([[2**25, 2**25 + 1, 7]], dtype=np.int64))
    assert sentences_from_matrix(X, vocab_for(["A", "B", "C"])) == ["B A C"]


def test_uneven_rows_are_split_without_changing_results():
    rng = np.random.default_rng(3)
    dense = np.zeros((64, 3000), dtype=np.float32)
    dense[0] = rng.integers(1, 50, 3000)  # one very wide row
    dense[1:, :5] = rng.integers(1, 5, (63, 5))
    genes = [f"G{i}" for i in range(3000)]
    vocab = vocab_for(genes)
    assert sentences_from_matrix(dense, vocab, top_k=10) == slow_sentences(dense, genes, 10)


def test_encoder_quotes_only_when_needed():
    words = np.array(["A", "B,1"], dtype=object)
    assert not SentenceEncoder(np.array(["A", "B"], dtype=object), csv_quote=True).needs_quotes
    long_id = b"a-cell-id-longer-than-one-token," + b'"'
    enc = SentenceEncoder(words, True, [b'c1,"', long_id], [b'"\n', b'",x\n'])
    assert enc.needs_quotes
    ranked = rank_words(sp.csr_matrix(np.array([[1.0, 2.0], [0, 0], [3, 1]], np.float32)))
    assert enc.lines(ranked, np.array([0, 1, 1])) == (
        b'c1,"B,1 A"\n' + long_id + b'",x\n' + long_id + b'A B,1",x\n'
    )


gene_names = st.lists(
    st.sampled_from(["CD3E", "cd3e", "MS4A1", "LYZ", "Actb", "ACTB", "MT-CO1", "B2M", "", "Ñ1"]),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    genes=gene_names,
    n_cells=st.integers(1, 12),
    density=st.floats(0.0, 1.0),
    int_values=st.booleans(),
    top_k=st.one_of(st.none(), st.integers(1, 8)),
    seed=st.integers(0, 2**16),
    explicit_zeros=st.booleans(),
)
def test_matches_slow_reference_on_random_sparse(
    genes, n_cells, density, int_values, top_k, seed, explicit_zeros
):
    rng = np.random.default_rng(seed)
    values = (
        rng.integers(1, 4, (n_cells, len(genes)))
        if int_values
        else rng.random((n_cells, len(genes))) * 3
    )
    mask = rng.random((n_cells, len(genes))) < density
    dense = np.where(mask, values, 0).astype(np.float32)
    X = sp.csr_matrix(dense)
    if explicit_zeros and X.nnz:
        X.data[rng.random(X.nnz) < 0.3] = 0  # zeros stored explicitly
        dense = X.toarray()
    vocab = vocab_for(genes, merge=True)
    assert sentences_from_matrix(X, vocab, top_k) == slow_sentences(dense, genes, top_k)
    assert sentences_from_matrix(X.tocsc(), vocab, top_k) == slow_sentences(dense, genes, top_k)


def test_real_data_matches_cell2sentence_up_to_ties(real_h5ad):
    utils = pytest.importorskip("cell2sentence.utils")
    import anndata as ad

    from .reference import same_up_to_ties

    adata = ad.read_h5ad(real_h5ad)
    X = sp.csr_matrix(adata.X)
    genes = list(adata.var_names)
    upstream = utils.generate_sentences(adata, utils.generate_vocabulary(adata))
    ours = sentences_from_matrix(X, vocab_for(genes))
    assert len(ours) == len(upstream) == adata.n_obs
    for i, (a, b) in enumerate(zip(ours, upstream, strict=True)):
        row = X.getrow(i)
        values = {genes[j].upper(): float(v) for j, v in zip(row.indices, row.data, strict=True)}
        assert same_up_to_ties(a, b, values), f"cell {i} differs beyond ties"
    assert pd.Series(ours).str.len().gt(0).mean() > 0.99
