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

from .choices import SYMBOLS_AUTO as SYMBOLS_AUTO
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


NON_GENE_BIOTYPE_COLUMN = "feature_biotype"
SPIKE_IN_PREFIX = "ERCC-"
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class NonGenes:
    """Columns that are not genes (spike-ins, non-gene biotypes): left out of sentences."""

    mask: np.ndarray
    reasons: dict[str, int]
    examples: tuple[str, ...]

    @property
    def n(self) -> int:
        return int(self.mask.sum())

    def describe(self) -> str:
        """One line for warnings: how many, why, an example."""
        why = ", ".join(f"{n:,} {r}" for r, n in self.reasons.items())
        example = f"; e.g. {self.examples[0]}" if self.examples else ""
        return f"{self.n:,} features that are not genes are left out of sentences ({why}{example})"


def non_gene_features(var: pd.DataFrame, symbols: GeneSymbols) -> NonGenes:
    """Spike-ins and non-gene biotypes among the columns of ``var``.

    A column is not a gene when ``var['feature_biotype']`` exists and is not ``gene``
    (CELLxGENE marks ERCC spike-ins ``spike-in``), or when its name or symbol starts with
    ``ERCC-`` (the ERCC spike-in controls).
    """
    n = len(var)
    mask = np.zeros(n, dtype=bool)
    reasons: dict[str, int] = {}
    if NON_GENE_BIOTYPE_COLUMN in var.columns:
        biotype = var[NON_GENE_BIOTYPE_COLUMN].astype(object)
        text = biotype.where(biotype.notna(), "gene").astype(str).str.strip().str.lower()
        other = (text != "gene").to_numpy()
        for kind, count in pd.Series(text[other]).value_counts().items():
            reasons[f"{NON_GENE_BIOTYPE_COLUMN} '{kind}'"] = int(count)
        mask |= other
    names = np.asarray(var.index.astype(str), dtype=object)
    sym = np.asarray(symbols.symbols, dtype=object)
    spike = np.array(
        [
            str(a).strip().upper().startswith(SPIKE_IN_PREFIX)
            or str(b).strip().upper().startswith(SPIKE_IN_PREFIX)
            for a, b in zip(names, sym, strict=False)
        ],
        dtype=bool,
    )
    if len(spike) == n and (spike & ~mask).any():
        reasons["ERCC spike-ins"] = int((spike & ~mask).sum())
        mask |= spike
    examples = tuple(str(s) or str(i) for s, i in zip(sym[mask][:3], names[mask][:3], strict=False))
    return NonGenes(mask, reasons, examples)


@dataclass(frozen=True)
class Vocabulary:
    """The C2S words of a matrix and how its columns map onto them.

    ``words`` are unique upper-cased symbols sorted alphabetically (so the word id is also the
    tie-break rank). ``word_of_column[j]`` is the word id of column ``j`` or ``-1`` when the
    column has no symbol or is excluded. ``merged`` lists groups of columns that became one word;
    ``repeated`` the exact duplicate names among them (name, number of columns); ``respaced``
    the symbols whose whitespace became ``_`` (a word never holds a space); ``excluded`` how many
    columns were left out on purpose (non-genes).
    """

    words: np.ndarray
    word_of_column: np.ndarray
    merged: tuple[tuple[str, tuple[str, ...]], ...]
    repeated: tuple[tuple[str, int], ...] = ()
    respaced: tuple[tuple[str, str], ...] = ()
    excluded: int = 0

    @property
    def n_words(self) -> int:
        return len(self.words)

    @property
    def identity(self) -> bool:
        """True when every column is its own word (no merging, nothing dropped)."""
        return not self.merged and bool(np.all(self.word_of_column >= 0))


def build_vocabulary(
    symbols: GeneSymbols,
    *,
    merge_duplicates: bool = True,
    path: str,
    exclude: np.ndarray | None = None,
) -> Vocabulary:
    """Upper-case the symbols and map columns to words.

    Symbols that differ only by case (``C1orf220``/``C1ORF220``, present in real 10x hg19 data)
    always become one word; exact duplicates are merged too unless ``merge_duplicates`` is
    False (then they are an error). Merged columns are summed when sentences are built, so each
    word appears once per cell. Whitespace inside a symbol becomes ``_``; columns set in
    ``exclude`` (non-genes) get no word.
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
    stripped = [str(s).strip() for s in original]
    respaced = tuple(
        (s, _WHITESPACE.sub("_", s)) for s in dict.fromkeys(stripped) if _WHITESPACE.search(s)
    )
    if respaced:
        stripped = [_WHITESPACE.sub("_", s) for s in stripped]
    upper = np.array([s.upper() for s in stripped], dtype=object)
    has_word = upper != ""
    excluded = 0
    if exclude is not None and len(exclude) == len(upper):
        excluded = int((has_word & exclude).sum())
        has_word &= ~exclude
    repeated: tuple[tuple[str, int], ...] = ()
    if symbols.source != SYMBOLS_ENSEMBL_MAP:
        exact = pd.Series(original[has_word]).astype(str).value_counts(sort=False)
        exact = exact[exact > 1]
        repeated = tuple((str(k), int(v)) for k, v in exact.items())
        if repeated and not merge_duplicates:
            raise DataError(
                f"{len(repeated):,} gene names occur more than once in {symbols.source} "
                f"(e.g. {', '.join(name for name, _ in repeated[:3])})",
                path=path,
                hint="make them unique (anndata var_names_make_unique) or let them be merged "
                "(leave out --no-merge-duplicates)",
            )
    words, inverse = np.unique(upper[has_word].astype(str), return_inverse=True)
    word_of_column = np.full(len(upper), -1, dtype=np.int32)
    word_of_column[has_word] = inverse
    counts = np.bincount(inverse, minlength=len(words))
    merged: list[tuple[str, tuple[str, ...]]] = []
    for w in np.flatnonzero(counts > 1):
        cols = np.flatnonzero(word_of_column == w)
        merged.append((str(words[w]), tuple(str(original[c]) for c in cols)))
    return Vocabulary(
        words.astype(object), word_of_column, tuple(merged), repeated, respaced, excluded
    )
