"""The C2S rank transform: expression rows → cell sentences, vectorised over CSR row chunks.

A cell sentence lists the cell's expressed genes (upper-cased symbols, see :mod:`.genes`) by
descending expression value, separated by one space. Rules, applied the same way on every path:

* only values ``> 0`` become words: explicitly stored zeros are dropped (cell2sentence 1.2.0
  would append them as words at the end of the sentence);
* columns that map to the same word (symbols equal after upper-casing, or merged duplicates) are
  summed first, so a word appears at most once (cell2sentence 1.2.0 misaligns every later gene);
* **ties** (equal values) are ordered by the word in code-point order (``np.unique`` order),
  which makes sentences independent of gene order in the file and of random seeds;
* ``top_k`` keeps the first ``k`` words (partial selection: rows are not fully sorted).

Values are compared as float32 when that is exact (all integer counts below 2**24 and all
float32 data); otherwise an exact float64 path is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .genes import Vocabulary

_LOW32 = np.uint64(0xFFFFFFFF)
_PAD = np.uint64(np.iinfo(np.uint64).max)
_MAX_EXACT_F32_INT = 2**24


@dataclass(frozen=True)
class RankedChunk:
    """Ranked words of a block of cells: ``words`` flat (int64 word ids), ``counts`` per cell."""

    words: np.ndarray
    counts: np.ndarray

    def per_cell(self) -> list[np.ndarray]:
        """Split ``words`` into one array per cell."""
        return np.split(self.words, np.cumsum(self.counts)[:-1]) if len(self.counts) else []


class InvalidValues(ValueError):
    """A chunk holds NaN, infinite or negative values (``row`` is the chunk-local cell)."""

    def __init__(self, what: str, row: int) -> None:
        super().__init__(what)
        self.what = what
        self.row = row


def to_word_matrix(chunk: sp.csr_matrix, vocab: Vocabulary) -> sp.csr_matrix:
    """Re-index a cells × genes CSR chunk to cells × words; positive values only.

    Raises :class:`InvalidValues` on NaN/inf/negative values.
    """
    data = chunk.data
    if data.dtype.kind == "f":
        bad = ~np.isfinite(data)
        if bad.any():
            raise InvalidValues("NaN or infinite values", _row_of(chunk, int(np.argmax(bad))))
    neg = data < 0
    if neg.any():
        raise InvalidValues("negative values", _row_of(chunk, int(np.argmax(neg))))
    words = vocab.word_of_column[chunk.indices]
    keep = (data != 0) & (words >= 0)
    n_rows = chunk.shape[0]
    if vocab.identity:
        if keep.all():
            return sp.csr_matrix((data, words, chunk.indptr), shape=(n_rows, vocab.n_words))
        kept_before = np.concatenate([[0], np.cumsum(keep)])
        indptr = kept_before[chunk.indptr]
        return sp.csr_matrix((data[keep], words[keep], indptr), shape=(n_rows, vocab.n_words))
    rows = np.repeat(np.arange(n_rows), np.diff(chunk.indptr))[keep]
    coo = sp.coo_matrix((data[keep], (rows, words[keep])), shape=(n_rows, vocab.n_words))
    out = coo.tocsr()  # sums the columns merged into one word
    out.eliminate_zeros()
    return out


def _row_of(chunk: sp.csr_matrix, pos: int) -> int:
    return int(np.searchsorted(chunk.indptr, pos, side="right") - 1)


def _sort_keys(data: np.ndarray) -> np.ndarray | None:
    """uint32 keys whose ascending order is descending ``data`` (> 0), or None if inexact."""
    if data.dtype == np.float32:
        f32 = data
    elif data.dtype.kind in "iu":
        if len(data) and int(data.max()) >= _MAX_EXACT_F32_INT:
            return None
        f32 = data.astype(np.float32)
    else:
        f32 = data.astype(np.float32)
        if not np.array_equal(f32.astype(data.dtype), data):
            return None
    # For positive floats the IEEE bit pattern increases with the value; invert for descending.
    return ~f32.view(np.uint32)


def rank_words(words_csr: sp.csr_matrix, top_k: int | None = None) -> RankedChunk:
    """Order each row's words by descending value (ties: lower word id first), keep ``top_k``."""
    counts_all = np.diff(words_csr.indptr).astype(np.int64)
    n_rows = words_csr.shape[0]
    keys32 = _sort_keys(words_csr.data)
    if n_rows == 0 or words_csr.nnz == 0:
        return RankedChunk(np.zeros(0, np.int64), np.zeros(n_rows, np.int64))
    if keys32 is None:
        return _rank_exact(words_csr, counts_all, top_k)
    keys = (keys32.astype(np.uint64) << np.uint64(32)) | words_csr.indices.astype(np.uint64)
    width = int(counts_all.max())
    if n_rows > 1 and n_rows * width > 4 * len(keys) + 1_000_000:
        # Very uneven rows: pad smaller blocks instead of one wide block.
        half = n_rows // 2
        a = rank_words(words_csr[:half], top_k)
        b = rank_words(words_csr[half:], top_k)
        return RankedChunk(np.concatenate([a.words, b.words]), np.concatenate([a.counts, b.counts]))
    row_of = np.repeat(np.arange(n_rows), counts_all)
    pos = np.arange(len(keys)) - np.repeat(words_csr.indptr[:-1], counts_all)
    padded = np.full((n_rows, width), _PAD, dtype=np.uint64)
    padded[row_of, pos] = keys
    if top_k is not None and top_k < width:
        padded = np.partition(padded, top_k - 1, axis=1)[:, :top_k]
        width = top_k
    padded.sort(axis=1)
    counts = np.minimum(counts_all, width) if top_k is not None else counts_all
    mask = np.arange(width)[None, :] < counts[:, None]
    return RankedChunk((padded[mask] & _LOW32).astype(np.int64), counts)


def _rank_exact(words_csr: sp.csr_matrix, counts: np.ndarray, top_k: int | None) -> RankedChunk:
    """Exact ordering for values float32 cannot hold (float64 data, huge counts)."""
    rows = np.repeat(np.arange(words_csr.shape[0]), counts)
    order = np.lexsort((words_csr.indices, -words_csr.data.astype(np.float64), rows))
    words = words_csr.indices[order].astype(np.int64)
    if top_k is None:
        return RankedChunk(words, counts)
    pos = np.arange(len(words)) - np.repeat(words_csr.indptr[:-1], counts)
    keep = pos < top_k
    return RankedChunk(words[keep], np.minimum(counts, top_k))


class SentenceEncoder:
    """Turns ranked word ids into UTF-8 text, whole chunks at a time (no per-cell Python loop).

    Each word is stored once as ``" WORD"`` in a byte blob; a line is assembled by gathering byte
    ranges: ``prefix + WORD1 + " WORD2" ... + suffix``.
    """

    def __init__(self, words: np.ndarray, csv_quote: bool = False) -> None:
        self.words = np.asarray(words, dtype=object)
        self.needs_quotes = csv_quote and any(any(c in w for c in ',"\r\n') for w in self.words)
        texts = [(" " + (w.replace('"', '""') if self.needs_quotes else w)) for w in self.words]
        encoded = [t.encode("utf-8") for t in texts]
        self.lens = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
        self.starts = np.cumsum(self.lens) - self.lens
        self.blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def lines(self, ranked: RankedChunk, prefixes: list[bytes], suffixes: list[bytes]) -> bytes:
        """``prefix_i + sentence_i + suffix_i`` for every cell, concatenated."""
        n = len(ranked.counts)
        extra = b"".join(prefixes) + b"".join(suffixes)
        extra_arr = np.frombuffer(extra, dtype=np.uint8)
        plen = np.fromiter((len(p) for p in prefixes), dtype=np.int64, count=n)
        slen = np.fromiter((len(s) for s in suffixes), dtype=np.int64, count=n)
        base = len(self.blob)
        pstart = base + np.cumsum(plen) - plen
        sstart = base + plen.sum() + np.cumsum(slen) - slen

        counts = ranked.counts
        tok_per_row = counts + 2
        row_tok = np.cumsum(tok_per_row) - tok_per_row
        n_tok = int(tok_per_row.sum())
        tstart = np.empty(n_tok, dtype=np.int64)
        tlen = np.empty(n_tok, dtype=np.int64)
        tstart[row_tok], tlen[row_tok] = pstart, plen
        end_tok = row_tok + counts + 1
        tstart[end_tok], tlen[end_tok] = sstart, slen
        if len(ranked.words):
            word_row_start = np.cumsum(counts) - counts
            offset = np.repeat(row_tok + 1 - word_row_start, counts)
            wpos = np.arange(len(ranked.words)) + offset
            first = np.zeros(len(ranked.words), dtype=np.int64)
            first[word_row_start[counts > 0]] = 1  # no leading space before a row's first word
            tstart[wpos] = self.starts[ranked.words] + first
            tlen[wpos] = self.lens[ranked.words] - first
        total = int(tlen.sum())
        idx_type = np.int32 if base + len(extra_arr) < 2**31 and total < 2**31 else np.int64
        out_start = np.cumsum(tlen) - tlen
        src = np.repeat((tstart - out_start).astype(idx_type), tlen)
        src += np.arange(total, dtype=idx_type)
        return np.concatenate([self.blob, extra_arr])[src].tobytes()

    def sentences(self, ranked: RankedChunk) -> list[str]:
        """The sentences as Python strings (one per cell)."""
        n = len(ranked.counts)
        text = self.lines(ranked, [b""] * n, [b"\n"] * n).decode("utf-8")
        return text.split("\n")[:n]


ChunkSource = Callable[[], Iterator[tuple[np.ndarray, sp.csr_matrix]]]


def sentences_from_matrix(
    matrix: sp.spmatrix | np.ndarray, vocab: Vocabulary, top_k: int | None = None
) -> list[str]:
    """Cell sentences of an in-memory cells × genes matrix (dense or sparse)."""
    csr = sp.csr_matrix(matrix)
    csr.sum_duplicates()
    ranked = rank_words(to_word_matrix(csr, vocab), top_k)
    return SentenceEncoder(vocab.words).sentences(ranked)
