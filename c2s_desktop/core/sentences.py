"""Dataset → cell sentences: the C2S rank transform, vectorised over CSR row chunks.

Reading happens on the calling thread (h5py is not parallel); ranking and text assembly of
chunks run on a small thread pool (NumPy sorts and gathers release the GIL), so memory stays
bounded by the chunk size times the chunks in flight. :mod:`.sentence_csv` writes the CSV.

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

import ctypes
import ctypes.util
import functools
import os
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from .csv_table import needs_csv_quotes
from .errors import DataError
from .genes import Vocabulary
from .progress import CancelToken, check_cancel

if TYPE_CHECKING:
    from .dataset import Dataset

_PAD = np.uint64(np.iinfo(np.uint64).max)
_MAX_EXACT_F32_INT = 2**24
TARGET_CHUNK_NNZ = 1_500_000


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
    if not (data >= 0).all() or (data.dtype.kind == "f" and len(data) and np.isinf(data.max())):
        bad = ~np.isfinite(data) if data.dtype.kind == "f" else np.zeros(len(data), bool)
        if bad.any():
            raise InvalidValues("NaN or infinite values", _row_of(chunk, int(np.argmax(bad))))
        raise InvalidValues("negative values", _row_of(chunk, int(np.argmax(data < 0))))
    words = vocab.word_of_column[chunk.indices]
    n_rows = chunk.shape[0]
    if vocab.identity:
        keep = data != 0
        if keep.all():
            return _csr(data, words, chunk.indptr, (n_rows, vocab.n_words))
        kept_before = np.concatenate([[0], np.cumsum(keep)])
        indptr = kept_before[chunk.indptr]
        return _csr(data[keep], words[keep], indptr, (n_rows, vocab.n_words))
    keep = (data != 0) & (words >= 0)
    rows = np.repeat(np.arange(n_rows), np.diff(chunk.indptr))[keep]
    values = data[keep]
    if values.dtype.kind in "iu" and values.dtype.itemsize < 8:
        values = values.astype(np.int64)  # merged columns are summed: no uint16/int32 wrap-around
    coo = sp.coo_matrix((values, (rows, words[keep])), shape=(n_rows, vocab.n_words))
    out = coo.tocsr()  # sums the columns merged into one word
    out.eliminate_zeros()
    return out


def _csr(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape) -> sp.csr_matrix:  # noqa: ANN001
    """A CSR matrix from trusted arrays, skipping scipy's O(nnz) format checks."""
    out = sp.csr_matrix(shape, dtype=data.dtype)
    if indptr[-1] < 2**31:
        indices, indptr = indices.astype(np.int32, copy=False), indptr.astype(np.int32, copy=False)
    else:
        indices = indices.astype(np.int64, copy=False)
    out.data, out.indices, out.indptr = data, indices, indptr
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
    width = int(counts_all.max())
    if n_rows > 1 and n_rows * width > 4 * len(keys32) + 1_000_000:
        # Very uneven rows: pad smaller blocks instead of one wide block.
        half = n_rows // 2
        a = rank_words(words_csr[:half], top_k)
        b = rank_words(words_csr[half:], top_k)
        return RankedChunk(np.concatenate([a.words, b.words]), np.concatenate([a.counts, b.counts]))
    # One uint64 key per entry: (inverted value bits << 32) | word id, written as two uint32
    # halves. Each row's keys are then copied into a padded block (one memcpy per row through a
    # sliding-window view) and rows partition/sort independently, in C.
    nnz = len(keys32)
    keys = np.empty(nnz + width, dtype=np.uint64)
    keys[nnz:] = _PAD
    halves = keys.view(np.uint32)
    low, high = (0, 1) if sys.byteorder == "little" else (1, 0)
    halves[low : 2 * nnz : 2] = words_csr.indices
    halves[high : 2 * nnz : 2] = keys32
    windows = np.lib.stride_tricks.sliding_window_view(keys, width)
    padded = windows[words_csr.indptr[:-1]]
    np.putmask(padded, np.arange(width)[None, :] >= counts_all[:, None], _PAD)
    if top_k is not None and top_k < width:
        padded = np.partition(padded, top_k - 1, axis=1)[:, :top_k].copy()
        width = top_k
    padded.sort(axis=1)
    counts = np.minimum(counts_all, width) if top_k is not None else counts_all
    mask = np.arange(width)[None, :] < counts[:, None]
    word_ids = padded.view(np.uint32).reshape(n_rows, width, 2)[:, :, low]
    return RankedChunk(word_ids[mask].astype(np.int64), counts)


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


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ``range(start, start + length)`` → (positions, offsets within each range)."""
    local = np.arange(int(lengths.sum()), dtype=np.int64)
    local -= np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + local, local


def _tokenize(strings: list[bytes], width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut byte strings into ``width``-byte tokens → (token bytes (n, width), lengths, counts)."""
    counts = np.fromiter(((len(b) + width - 1) // width for b in strings), np.int64, len(strings))
    padded = b"".join(b.ljust(int(c) * width, b"\0") for b, c in zip(strings, counts, strict=True))
    table = np.frombuffer(padded, dtype=np.uint8).reshape(-1, width)
    sizes = np.fromiter((len(b) for b in strings), np.int64, len(strings))
    _, local = _ranges(np.zeros(len(strings), np.int64), counts)
    lens = np.minimum(width, np.repeat(sizes, counts) - local * width)
    return table, lens, counts


class SentenceEncoder:
    """Turns ranked word ids into UTF-8 lines, whole chunks at a time (no per-cell Python loop).

    Every word (``" WORD"`` and, for the first word of a line, ``"WORD"``) and every per-cell
    frame (``prefix``/``suffix``, e.g. ``"cell_id,"`` and ``"\\n"``) is cut into fixed-width
    byte tokens. A chunk of lines is one gather of token rows plus one mask compress.
    """

    def __init__(
        self,
        words: np.ndarray,
        csv_quote: bool = False,
        prefixes: list[bytes] | None = None,
        suffixes: list[bytes] | None = None,
    ) -> None:
        self.words = np.asarray(words, dtype=object)
        self.needs_quotes = csv_quote and needs_csv_quotes(self.words)
        names = [(w.replace('"', '""') if self.needs_quotes else w).encode() for w in self.words]
        longest = max((len(n) for n in names), default=1) + 1
        self.width = width = max(8, -(-longest // 8) * 8)
        spaced = [b" " + n for n in names]
        prefixes = [b""] if prefixes is None else prefixes
        suffixes = [b"\n"] if suffixes is None else suffixes
        parts = [
            _tokenize(spaced, width),
            _tokenize(names, width),
            _tokenize(prefixes, width),
            _tokenize(suffixes, width),
        ]
        table = np.vstack([p[0] for p in parts])
        lens = np.concatenate([p[1] for p in parts])
        self.n_words = len(names)
        self.p_count, self.s_count = parts[2][2], parts[3][2]
        self.p_start = 2 * self.n_words + np.cumsum(self.p_count) - self.p_count
        self.s_start = self.p_start[-1] + self.p_count[-1] + np.cumsum(self.s_count) - self.s_count
        void = np.dtype((np.void, width))
        self._table = np.ascontiguousarray(table).view(void).ravel()
        mask = np.arange(width, dtype=np.int64)[None, :] < lens[:, None]
        self._mask = np.ascontiguousarray(mask).view(void).ravel()

    def lines(self, ranked: RankedChunk, frames: np.ndarray | None = None) -> bytes:
        """``prefix[f] + sentence + suffix[f]`` for every cell (``f = frames[i]``, default 0)."""
        counts = ranked.counts
        n = len(counts)
        frames = np.zeros(n, np.int64) if frames is None else np.asarray(frames, np.int64)
        pc, sc = self.p_count[frames], self.s_count[frames]
        n_tok = pc + counts + sc
        row_off = np.cumsum(n_tok) - n_tok
        ids = np.empty(int(n_tok.sum()), dtype=np.int64)
        pos, local = _ranges(row_off, pc)
        ids[pos] = np.repeat(self.p_start[frames], pc) + local
        pos, local = _ranges(row_off + pc, counts)
        first = (local == 0).astype(np.int64)  # first word of a line: the variant without space
        ids[pos] = ranked.words + first * self.n_words
        pos, local = _ranges(row_off + pc + counts, sc)
        ids[pos] = np.repeat(self.s_start[frames], sc) + local
        data = self._table[ids].view(np.uint8)
        keep = self._mask[ids].view(np.bool_)
        return data[keep].tobytes()

    def sentences(self, ranked: RankedChunk) -> list[str]:
        """The sentences as Python strings (one per cell)."""
        n = len(ranked.counts)
        return self.lines(ranked).decode("utf-8").split("\n")[:n]


ChunkSource = Callable[[], Iterator[tuple[np.ndarray, sp.csr_matrix]]]


def sentences_from_matrix(
    matrix: sp.spmatrix | np.ndarray, vocab: Vocabulary, top_k: int | None = None
) -> list[str]:
    """Cell sentences of an in-memory cells × genes matrix (dense or sparse)."""
    csr = sp.csr_matrix(matrix)
    csr.sum_duplicates()
    ranked = rank_words(to_word_matrix(csr, vocab), top_k)
    return SentenceEncoder(vocab.words).sentences(ranked)


LineEncoder = Callable[[np.ndarray, RankedChunk], bytes]
"""Text of a ranked chunk's lines, given the chunk's row indices."""


@functools.cache
def tune_allocator() -> None:
    """Keep large freed buffers in the process (glibc) instead of returning them to the OS.

    Every chunk allocates arrays of tens of MB; by default glibc maps and unmaps each one, and
    the page faults of touching fresh pages cost more than the ranking itself. Peak memory is
    unchanged (the same buffers are reused).
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 512 * 1024**2)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1024 * 1024**2)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def default_threads() -> int:
    """Worker threads for ranking: the usable cores, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def chunk_rows_for(dataset: Dataset) -> int:
    """Rows per chunk so a chunk holds about ``TARGET_CHUNK_NNZ`` stored values."""
    lay = dataset.matrix.layout
    per_row = max(1.0, lay.nnz / max(1, lay.shape[0]))
    return int(np.clip(TARGET_CHUNK_NNZ / per_row, 32, 16384))


def iter_ranked(
    dataset: Dataset,
    top_k: int | None = None,
    *,
    rows: np.ndarray | None = None,
    threads: int | None = None,
    cancel: CancelToken | None = None,
    encode: LineEncoder | None = None,
) -> Iterator[tuple[np.ndarray, RankedChunk, bytes]]:
    """Yield ``(row_indices, ranked, lines)`` chunk by chunk, in row order.

    ``lines`` is the output of ``encode`` for the chunk (``b""`` without one). Raises
    :class:`DataError` (naming the file, source and cell) on NaN/inf/negative values.
    """
    vocab = dataset.vocabulary
    n_threads = threads or default_threads()
    tune_allocator()

    def work(idx: np.ndarray, chunk) -> tuple[np.ndarray, RankedChunk, bytes]:  # noqa: ANN001
        try:
            ranked = rank_words(to_word_matrix(chunk, vocab), top_k)
        except InvalidValues as exc:
            cell = dataset.cell_ids[idx[exc.row]]
            raise DataError(
                f"{dataset.source.name} contains {exc.what} (first in cell '{cell}')",
                path=dataset.path,
                hint="cell sentences need non-negative, finite values; choose another source "
                "with --source",
            ) from None
        return idx, ranked, encode(idx, ranked) if encode else b""

    chunks = dataset.matrix.iter_rows(chunk_rows_for(dataset), rows)
    with ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="c2s-rank") as pool:
        pending: deque[Future] = deque()
        try:
            for idx, chunk in chunks:
                check_cancel(cancel)
                pending.append(pool.submit(work, idx, chunk))
                while len(pending) > n_threads:
                    yield pending.popleft().result()
            while pending:
                check_cancel(cancel)
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()


def cell_sentences(
    dataset: Dataset, rows: np.ndarray | None = None, top_k: int | None = None
) -> list[str]:
    """Sentences of the given cells (all when ``rows`` is None) as strings, in row order."""
    encoder = SentenceEncoder(dataset.vocabulary.words)
    order = None
    if rows is not None:
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        rows = rows[order]
    out: list[str] = []
    for _, ranked, _ in iter_ranked(dataset, top_k, rows=rows):
        out.extend(encoder.sentences(ranked))
    if order is None:
        return out
    result = [""] * len(out)
    for pos, i in enumerate(order):
        result[i] = out[pos]
    return result
