"""The C2S inverse transform: cell sentence → expression vector, and generated-sentence cleanup.

As in cell2sentence 1.2.0 (``benchmark_expression_conversion``): on a sample of cells, the
log10-normalised value of each expressed gene is regressed on ``log10(1 + rank)`` (rank 0 = top
gene), keeping points with ``log10(1 + rank) < 3``; the fitted line turns a word's position back
into an expression value. Fit quality (R², Pearson, Spearman) is computed on all expressed values
of the sample, as the reference does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.stats import pearsonr, spearmanr

from .dataset import KIND_COUNTS, KIND_LOGNORM, KIND_NORMALIZED, Dataset
from .errors import DataError
from .sentences import rank_words, to_word_matrix

BASE10_THRESHOLD = 3.0
NOT_A_GENE = "NOT_A_GENE"


@dataclass(frozen=True)
class InverseFit:
    """``expression ≈ intercept + slope * log10(1 + rank)`` on log10(1 + normalised) values."""

    slope: float
    intercept: float
    r_squared: float
    pearson_r: float
    spearman_r: float
    n_cells: int
    n_points: int
    note: str = ""

    def value_at(self, positions: np.ndarray) -> np.ndarray:
        """Expression predicted for 0-based sentence positions."""
        return self.intercept + self.slope * np.log10(1.0 + np.asarray(positions, np.float64))


def log10_normalize(
    csr: sp.csr_matrix, kind: str, target_sum: float | None, log1p_base: float | None
) -> sp.csr_matrix:
    """Bring a chunk onto the C2S scale: normalise per cell to ``target_sum``, then log10(1+x).

    ``kind`` is the source's detected kind; log-normalised input is converted from ``log1p_base``
    (natural log when None, as scanpy stores it) to base 10 instead of being normalised again.
    """
    out = csr.astype(np.float64, copy=True)
    if kind == KIND_LOGNORM:
        # log_b(1 + y) * log10(b) = log10(1 + y)
        out.data *= np.log10(log1p_base) if log1p_base else 1.0 / np.log(10.0)
        return out
    totals = np.asarray(out.sum(axis=1)).ravel()
    target = target_sum if target_sum is not None else float(np.median(totals[totals > 0]))
    scale = np.divide(target, totals, out=np.zeros_like(totals), where=totals > 0)
    out = sp.csr_matrix(sp.diags(scale) @ out)
    out.data = np.log10(1.0 + out.data)
    return out


def fit_inverse(
    dataset: Dataset, n_cells: int = 1024, seed: int = 0, target_sum: float | None = None
) -> InverseFit:
    """Fit the inverse transform on up to ``n_cells`` random cells of ``dataset``.

    Counts and normalised sources are normalised to ``target_sum`` (default: the median total of
    the sample) and log10(1+x)-transformed; log-normalised sources are converted to base 10.
    """
    kind = dataset.source.kind
    if kind not in (KIND_COUNTS, KIND_NORMALIZED, KIND_LOGNORM):
        raise DataError(f"cannot fit the inverse transform on {kind} data", path=dataset.path)
    rng = np.random.default_rng(seed)
    n = min(n_cells, dataset.n_cells)
    rows = np.sort(rng.choice(dataset.n_cells, size=n, replace=False))
    blocks = [chunk for _, chunk in dataset.matrix.iter_rows(4096, rows)]
    raw = to_word_matrix(sp.vstack(blocks, format="csr"), dataset.vocabulary)
    base = dataset.log1p_base
    note = ""
    if kind == KIND_LOGNORM:
        note = "log-normalised input assumed natural log" if base is None else ""
    values = log10_normalize(raw, kind, target_sum, base)
    x, y = rank_points(values)
    return fit_points(x, y, n, note)


def rank_points(values: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(log10(1 + rank), value) for every expressed entry, ranks from the C2S ordering."""
    ranked = rank_words(values)
    counts = ranked.counts
    rank = np.arange(len(ranked.words)) - np.repeat(np.cumsum(counts) - counts, counts)
    rows = np.repeat(np.arange(values.shape[0]), counts)
    vals = np.asarray(values.tocsr()[rows, ranked.words]).ravel()
    return np.log10(1.0 + rank.astype(np.float64)), vals.astype(np.float64)


def fit_points(x: np.ndarray, y: np.ndarray, n_cells: int, note: str = "") -> InverseFit:
    """Ordinary least squares on points with ``x < 3``; quality measured on all points."""
    sel = x < BASE10_THRESHOLD
    if sel.sum() < 2 or np.ptp(x[sel]) == 0:
        raise DataError("too few expressed genes to fit the inverse transform")
    slope, intercept = np.polyfit(x[sel], y[sel], 1)
    pred = intercept + slope * x
    ss_res = float(np.sum((y - pred) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    return InverseFit(
        float(slope),
        float(intercept),
        r2,
        float(pearsonr(y, pred).statistic),
        float(spearmanr(y, pred).statistic),
        n_cells,
        len(x),
        note,
    )


def expression_from_sentence(
    sentence: str | Sequence[str], genes: Sequence[str], fit: InverseFit, *, clip: bool = True
) -> np.ndarray:
    """Expression vector over ``genes`` (upper-cased names) from a sentence.

    As in cell2sentence: position ``p`` gets ``intercept + slope*log10(1+p)``; unknown words still
    use up their position; a repeated gene keeps its last value. ``clip`` sets negative predictions
    (far down long sentences) to 0 — the reference does not clip (``clip=False``).
    """
    words = sentence.split(" ") if isinstance(sentence, str) else list(sentence)
    index = {g: i for i, g in enumerate(genes)}
    out = np.zeros(len(genes), dtype=np.float32)
    values = fit.value_at(np.arange(len(words)))
    for pos, word in enumerate(words):
        i = index.get(word)
        if i is not None:
            out[i] = values[pos]
    return np.maximum(out, 0) if clip else out


def expression_matrix(
    sentences: Iterable[str | Sequence[str]],
    genes: Sequence[str],
    fit: InverseFit,
    *,
    clip: bool = True,
) -> np.ndarray:
    """Stack :func:`expression_from_sentence` over many sentences (cells × genes)."""
    return np.vstack([expression_from_sentence(s, genes, fit, clip=clip) for s in sentences])


@dataclass(frozen=True)
class CleanSentence:
    """A generated sentence after post-processing."""

    genes: list[str]
    n_invalid: int
    n_duplicates_merged: int


def postprocess_generated(text: str, vocabulary: Iterable[str]) -> CleanSentence:
    """Clean a generated sentence as cell2sentence does (tutorial 5).

    Upper-case, drop a trailing ``.``, split on spaces; words not in ``vocabulary`` count as
    invalid and are removed; a gene generated several times is kept once, at the floor of the
    mean of its positions (positions recomputed as duplicates are removed, like the reference).
    """
    vocab = vocabulary if isinstance(vocabulary, set | frozenset) else set(vocabulary)
    words = [w for w in text.strip().upper().rstrip(".").split(" ") if w != ""]
    marked = [w if w in vocab else NOT_A_GENE for w in words]
    n_invalid = marked.count(NOT_A_GENE)
    out = list(marked)
    merged = 0
    for gene, count in Counter(marked).items():
        if count > 1 and gene != NOT_A_GENE:
            positions = [i for i, w in enumerate(out) if w == gene]
            mean_pos = int(sum(positions) / len(positions))
            out = [w for w in out if w != gene]
            out.insert(mean_pos, gene)
            merged += count - 1
    return CleanSentence([w for w in out if w != NOT_A_GENE], n_invalid, merged)
