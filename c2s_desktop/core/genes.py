"""Gene symbols: find them in ``var``, map Ensembl IDs offline, build the C2S vocabulary.

C2S words are gene symbols upper-cased (cell2sentence's vocabulary rule). Symbols come from
``var_names`` when they are symbols, else from a symbol column (``feature_name`` in CELLxGENE
files, ``gene_symbols`` in 10x-derived files, ...), else from Ensembl IDs mapped with the bundled
GENCODE tables (``resources/genes``, see its README for source and licence).
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd

from .errors import DataError
from .resources import resource_path

SYMBOL_COLUMNS = (
    "feature_name",
    "gene_symbols",
    "gene_symbol",
    "gene_name",
    "gene_names",
    "symbol",
    "symbols",
    "gene",
    "genes",
    "feature_names",
)
"""``var`` columns that usually hold gene symbols, in order of preference."""

ENSEMBL_RE = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")
MOUSE_PREFIX = "ENSMUSG"
SYMBOLS_AUTO = "auto"
SYMBOLS_VAR_NAMES = "var_names"
SYMBOLS_ENSEMBL_MAP = "ensembl-map"
MIN_MAPPED_FRACTION = 0.5
MAX_SYMBOL_CHARS = 1000
"""Longer "symbols" are not genes (and would blow up sentence assembly, which pads words)."""


@dataclass(frozen=True)
class GeneSymbols:
    """Symbols for every column of a matrix.

    ``symbols[i]`` is the original symbol of column ``i`` or ``""`` when the column has none
    (an unmapped Ensembl ID). ``source`` says where they came from: ``var_names``, a ``var``
    column name, or ``ensembl-map``.
    """

    symbols: np.ndarray
    source: str
    n_mapped: int
    n_total: int
    note: str = ""


def ensembl_fraction(names: pd.Index | np.ndarray, sample: int = 2000) -> float:
    """Fraction of (a sample of) ``names`` that look like Ensembl gene IDs."""
    values = np.asarray(names, dtype=object)
    if len(values) == 0:
        return 0.0
    step = max(1, len(values) // sample)
    picked = values[::step]
    return sum(bool(ENSEMBL_RE.match(str(v))) for v in picked) / len(picked)


def looks_like_symbols(values: pd.Series | pd.Index) -> bool:
    """True when the values are mostly non-empty strings that are not Ensembl IDs."""
    arr = np.asarray(values, dtype=object)
    if len(arr) == 0:
        return False
    strings = [v for v in arr[:: max(1, len(arr) // 2000)] if isinstance(v, str) and v.strip()]
    if len(strings) < 0.9 * len(arr[:: max(1, len(arr) // 2000)]):
        return False
    numeric = sum(s.replace(".", "", 1).isdigit() for s in strings)
    return ensembl_fraction(np.asarray(strings)) < 0.5 and numeric < 0.5 * len(strings)


@cache
def ensembl_table(organism: str) -> dict[str, str]:
    """Ensembl gene ID (no version) → symbol for ``human`` or ``mouse`` from the bundled table."""
    path = resource_path("genes", f"ensembl_{organism}.tsv.gz")
    table: dict[str, str] = {}
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            gid, sym = line.rstrip("\n").split("\t")
            table.setdefault(gid, sym)
    return table


def map_ensembl(ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Map Ensembl IDs (versions allowed) to symbols; unmapped → ``""``. Returns (symbols, n)."""
    out = np.empty(len(ids), dtype=object)
    mapped = 0
    human = ensembl_table("human")
    mouse = ensembl_table("mouse")
    for i, raw in enumerate(ids):
        gid = str(raw).split(".", 1)[0]
        sym = (mouse if gid.startswith(MOUSE_PREFIX) else human).get(gid, "")
        out[i] = sym
        mapped += bool(sym)
    return out, mapped


def resolve_symbols(var: pd.DataFrame, choice: str, path: str) -> GeneSymbols:
    """Pick gene symbols for the genes of ``var`` (index = var_names).

    ``choice`` is ``auto``, ``var_names``, ``ensembl-map`` or a ``var`` column name.
    Raises :class:`DataError` (naming ``path``) when no usable symbols exist.
    """
    names = var.index
    if choice == SYMBOLS_VAR_NAMES:
        return _symbols_from(np.asarray(names.astype(str)), SYMBOLS_VAR_NAMES)
    if choice == SYMBOLS_ENSEMBL_MAP:
        return _mapped(np.asarray(names.astype(str)), path)
    if choice != SYMBOLS_AUTO:
        if choice not in var.columns:
            raise DataError(
                f"no gene column '{choice}' in var",
                path=path,
                hint=f"choose one of: var_names, {', '.join(map(str, var.columns)) or '(none)'}",
            )
        return _symbols_from(_column_values(var[choice]), choice)
    if looks_like_symbols(names):
        return _symbols_from(np.asarray(names.astype(str)), SYMBOLS_VAR_NAMES)
    lower = {str(c).lower(): c for c in var.columns}
    for col in SYMBOL_COLUMNS:
        if col in lower and looks_like_symbols(var[lower[col]]):
            return _symbols_from(_column_values(var[lower[col]]), str(lower[col]))
    if ensembl_fraction(names) >= 0.5:
        return _mapped(np.asarray(names.astype(str)), path)
    raise DataError(
        "cannot find gene symbols: var_names are neither symbols nor Ensembl IDs and no symbol "
        "column was found",
        path=path,
        hint="name the column that holds symbols with --symbols COLUMN",
    )


def _column_values(col: pd.Series) -> np.ndarray:
    values = col.astype(object).where(col.notna(), "")
    return np.asarray(values.astype(str), dtype=object)


def _symbols_from(values: np.ndarray, source: str) -> GeneSymbols:
    values = np.asarray(values, dtype=object)
    valid = int(sum(bool(v.strip()) for v in values))
    return GeneSymbols(values, source, valid, len(values))


def _mapped(ids: np.ndarray, path: str) -> GeneSymbols:
    symbols, mapped = map_ensembl(ids)
    frac = mapped / max(1, len(ids))
    if frac < MIN_MAPPED_FRACTION:
        raise DataError(
            f"genes are Ensembl IDs and only {mapped:,} of {len(ids):,} ({frac:.0%}) could be "
            "mapped to symbols with the bundled human/mouse table",
            path=path,
            hint="add a var column with gene symbols and pass it with --symbols COLUMN",
        )
    note = f"{mapped:,} of {len(ids):,} Ensembl IDs mapped to symbols (GENCODE table)"
    return GeneSymbols(symbols, SYMBOLS_ENSEMBL_MAP, mapped, len(ids), note)


@dataclass(frozen=True)
class Vocabulary:
    """The C2S words of a matrix and how its columns map onto them.

    ``words`` are unique upper-cased symbols sorted alphabetically (so the word id is also the
    tie-break rank). ``word_of_column[j]`` is the word id of column ``j`` or ``-1`` when the
    column has no symbol. ``merged`` lists groups of columns that became one word.
    """

    words: np.ndarray
    word_of_column: np.ndarray
    merged: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def n_words(self) -> int:
        return len(self.words)

    @property
    def identity(self) -> bool:
        """True when every column is its own word (no merging, nothing dropped)."""
        return not self.merged and bool(np.all(self.word_of_column >= 0))


def build_vocabulary(symbols: GeneSymbols, *, merge_duplicates: bool, path: str) -> Vocabulary:
    """Upper-case the symbols and map columns to words.

    Symbols that differ only by case (``C1orf220``/``C1ORF220``, present in real 10x hg19 data)
    always become one word; exact duplicates are an error unless ``merge_duplicates``. Merged
    columns are summed when sentences are built, so each word appears once per cell.
    """
    original = np.asarray(symbols.symbols, dtype=object)
    longest = max((len(str(s)) for s in original), default=0)
    if longest > MAX_SYMBOL_CHARS:  # sentence assembly pads every word to the longest one
        raise DataError(
            f"a gene name in {symbols.source} is {longest:,} characters long "
            f"(gene symbols are at most {MAX_SYMBOL_CHARS})",
            path=path,
            hint="this is not a gene symbol column; choose the right one with --symbols COLUMN",
        )
    upper = np.array([str(s).strip().upper() for s in original], dtype=object)
    has_word = upper != ""
    if not merge_duplicates and symbols.source != SYMBOLS_ENSEMBL_MAP:
        exact = pd.Series(original[has_word]).duplicated(keep=False)
        if exact.any():
            dups = pd.unique(original[has_word][exact.to_numpy()])
            raise DataError(
                f"{len(dups):,} gene names occur more than once in {symbols.source} "
                f"(e.g. {', '.join(map(str, dups[:3]))})",
                path=path,
                hint="make them unique (anndata var_names_make_unique) or merge them with "
                "--merge-duplicates",
            )
    words, inverse = np.unique(upper[has_word].astype(str), return_inverse=True)
    word_of_column = np.full(len(upper), -1, dtype=np.int32)
    word_of_column[has_word] = inverse
    counts = np.bincount(inverse, minlength=len(words))
    merged: list[tuple[str, tuple[str, ...]]] = []
    for w in np.flatnonzero(counts > 1):
        cols = np.flatnonzero(word_of_column == w)
        merged.append((str(words[w]), tuple(str(original[c]) for c in cols)))
    return Vocabulary(words.astype(object), word_of_column, tuple(merged))
