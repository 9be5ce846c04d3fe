"""Fuzzing the sentence builder against a plain reference (per row: sum columns of one word,
keep values > 0, order by descending value then word — np.lexsort over the row)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from c2s_desktop.core.genes import GeneSymbols, build_vocabulary
from c2s_desktop.core.sentences import InvalidValues, sentences_from_matrix

from .common import FUZZ, watchdog

NAMES = [
    "CD3E",
    "cd3e",
    "MS4A1",
    "Ms4a1",
    "B2M",
    "ACTB",
    "NKG7",
    "GNLY",
    "LYZ",
    "éTOILE",
    "A",
    "Z9",
]


def reference(matrix: np.ndarray, names: list[str], top_k: int | None) -> list[str]:
    words = sorted({n.upper() for n in names})
    index = {w: i for i, w in enumerate(words)}
    summed = np.zeros((matrix.shape[0], len(words)), dtype=np.float64)
    for j, name in enumerate(names):
        summed[:, index[name.upper()]] += matrix[:, j].astype(np.float64)
    out = []
    for row in summed:
        ids = np.flatnonzero(row > 0)
        order = ids[np.lexsort((ids, -row[ids]))]
        out.append(" ".join(words[i] for i in order[:top_k]))
    return out


@st.composite
def matrices(draw: st.DrawFn) -> tuple[np.ndarray, list[str], bool]:
    n_genes = draw(st.integers(1, len(NAMES)))
    names = draw(st.permutations(NAMES))[:n_genes]
    merged = len({n.upper() for n in names}) < len(names)
    n_cells = draw(st.integers(0, 12))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int32, np.int64, np.uint16]))
    if merged or np.dtype(dtype).kind in "iu":  # sums of merged columns stay exact
        elements = st.integers(0, 2**25 if np.dtype(dtype).itemsize == 8 else 60_000)
    else:
        elements = st.floats(0, 1e6, allow_nan=False, allow_infinity=False, width=32)
    values = draw(hnp.arrays(dtype, (n_cells, n_genes), elements=elements))
    zero_mask = draw(hnp.arrays(np.bool_, (n_cells, n_genes)))
    values[zero_mask] = 0  # sparse rows, empty rows
    return values, names, draw(st.booleans())


@FUZZ
@given(case=matrices(), top_k=st.one_of(st.none(), st.integers(1, 14)))
@example(  # found by this fuzzer: merged uint16 columns wrapped around to 0
    case=(np.array([[32768, 32768]], dtype=np.uint16), ["CD3E", "cd3e"], False), top_k=None
)
def test_sentences_equal_the_reference(case, top_k):
    values, names, sparse = case
    vocab = build_vocabulary(
        GeneSymbols(np.array(names, dtype=object), "var_names", len(names), len(names)),
        merge_duplicates=False,
        path="fuzz",
    )
    matrix = sp.csr_matrix(values) if sparse else values
    with watchdog():
        got = sentences_from_matrix(matrix, vocab, top_k)
    assert got == reference(values, names, top_k)


@FUZZ
@given(
    values=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=8),
        elements=st.one_of(st.floats(width=32), st.just(np.float32(-1.0))),
    )
)
def test_invalid_values_are_refused_not_ranked(values):
    names = [f"G{j}" for j in range(values.shape[1])]
    vocab = build_vocabulary(
        GeneSymbols(np.array(names, dtype=object), "var_names", len(names), len(names)),
        merge_duplicates=False,
        path="fuzz",
    )
    bad = bool(np.any(~np.isfinite(values)) or np.any(values < 0))
    with watchdog():
        if bad:
            with pytest.raises(InvalidValues):
                sentences_from_matrix(sp.csr_matrix(values), vocab)
        else:
            assert sentences_from_matrix(sp.csr_matrix(values), vocab) == reference(
                values, names, None
            )
