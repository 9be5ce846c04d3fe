"""Open an ``.h5ad`` file (or a Cell Ranger output) read-only and describe what it holds.

:func:`open_dataset` never writes to the file. A new HDF5 file is first walked in a child
process (:mod:`.inspect_child`) so a damaged one cannot hang the app; Cell Ranger ``.h5`` files
and matrix folders are read with scanpy (:mod:`.readers`) into an in-memory AnnData file.
Metadata (``obs``, ``var``, ``obsm`` shapes, ``uns`` hints) is read with anndata's element
reader; expression matrices stay in the file and are read in row chunks (:mod:`.matrix`), or
loaded once when the file is small.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from . import readers
from .anndata_io import read_elem
from .choices import SOURCE_AUTO as SOURCE_AUTO
from .errors import DataError, InputFileError
from .genes import (
    MOUSE_PREFIX,
    SYMBOLS_AUTO,
    GeneSymbols,
    NonGenes,
    Vocabulary,
    build_vocabulary,
    non_gene_features,
    resolve_symbols,
)
from .inspect_child import check_hdf5_finishes
from .matrix import H5Matrix, matrix_layout
from .progress import CancelToken, ProgressFn, check_cancel, no_progress

SOURCE_X = "X"
SOURCE_RAW = "raw"
LAYER_PREFIX = "layer:"

KIND_COUNTS = "counts"
KIND_NORMALIZED = "normalized"
KIND_LOGNORM = "log-normalized"
KIND_SCALED = "scaled"
KIND_INVALID = "invalid"
KIND_EMPTY = "empty"
RANKABLE_KINDS = (KIND_COUNTS, KIND_NORMALIZED, KIND_LOGNORM)

HUMAN = "Homo sapiens"
MOUSE = "Mus musculus"
ORGANISMS = (HUMAN, MOUSE)
DEFAULT_MEMORY_THRESHOLD = int(os.environ.get("C2S_MEMORY_THRESHOLD", str(1024**3)))
"""Matrices estimated larger than this (bytes) stay in the file (backed) instead of RAM."""

_SAMPLE_ROWS = 2000


@dataclass(frozen=True)
class SourceInfo:
    """One expression matrix of the file (``X``, ``raw`` or ``layer:NAME``) and what it holds."""

    name: str
    storage: str
    dtype: str
    n_cells: int
    n_genes: int
    nnz: int
    kind: str
    max_value: float
    detail: str

    @property
    def rankable(self) -> bool:
        """Whether cell sentences can be built from it."""
        return self.kind in RANKABLE_KINDS


@dataclass(frozen=True)
class DatasetInfo:
    """Everything :func:`open_dataset` detected, in plain values (JSON-friendly via ``asdict``)."""

    path: str
    n_cells: int
    n_genes: int
    backed: bool
    sources: list[SourceInfo]
    source: str
    symbols_source: str
    symbols_mapped: int
    symbols_note: str
    organism: str
    organism_from: str
    embeddings: dict[str, int]
    obs_columns: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    format: str = readers.FORMAT_H5AD
    """``h5ad``, ``10x-h5-v3``, ``10x-h5-v2`` or ``10x-mtx`` (see :mod:`.readers`)."""
    duplicates_merged: list[str] = field(default_factory=list)
    """Exact duplicate gene names summed into one word, as ``NAME (N columns)``."""
    non_genes_excluded: int = 0
    """Features that are not genes (spike-ins, non-gene biotypes) left out of sentences."""
    non_genes_note: str = ""
    symbols_respaced: int = 0
    """Symbols whose whitespace became ``_`` (a sentence word never holds a space)."""


class Dataset:
    """An open, read-only ``.h5ad`` file (or Cell Ranger output) with one chosen source.

    Use :func:`open_dataset`; close with :meth:`close` or a ``with`` block.
    """

    def __init__(
        self,
        path: Path,
        h5: h5py.File,
        obs: pd.DataFrame,
        var: pd.DataFrame,
        raw_var: pd.DataFrame | None,
        obsm: dict[str, Any],
        uns_hints: dict[str, Any],
    ) -> None:
        self.path = path
        self._h5 = h5
        self.obs = obs
        self.var = var
        self.raw_var = raw_var
        self._obsm = obsm
        self._uns = uns_hints
        self.sources: dict[str, SourceInfo] = {}
        self.source: SourceInfo
        self.matrix: H5Matrix
        self.symbols: GeneSymbols
        self.vocabulary: Vocabulary
        self.organism = HUMAN
        self.organism_from = "default"
        self.backed = False
        self.warnings: list[str] = []
        self.format = readers.FORMAT_H5AD
        self.read_warnings: list[str] = []
        """What reading a Cell Ranger input left out (repeated by every :meth:`select`)."""
        self.non_genes: NonGenes | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Close the underlying file (idempotent)."""
        if getattr(self, "matrix", None) is not None:
            self.matrix.close()
        if self._h5.id.valid:
            self._h5.close()

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plain properties ----------------------------------------------------------------------
    @property
    def log1p_base(self) -> float | None:
        """``uns['log1p']['base']`` of a log-normalised file (None: natural log or none)."""
        return self._uns.get("log1p_base")

    @property
    def n_cells(self) -> int:
        return len(self.obs)

    @property
    def n_genes(self) -> int:
        return self.matrix.shape[1]

    @property
    def cell_ids(self) -> np.ndarray:
        return np.asarray(self.obs.index.astype(str))

    @property
    def gene_var(self) -> pd.DataFrame:
        """``var`` of the chosen source (``raw.var`` for ``raw``)."""
        if self.source.name != SOURCE_RAW or self.raw_var is None:
            return self.var
        # CELLxGENE-style files keep symbols (feature_name) only in var: borrow them for raw.
        extra = [c for c in self.var.columns if c not in self.raw_var.columns]
        if not extra or not self.var.index.is_unique:
            return self.raw_var
        return self.raw_var.join(self.var[extra], how="left")

    def embedding_names(self) -> dict[str, int]:
        """``obsm`` keys holding a cells × d numeric matrix (d ≥ 2) → d."""
        out: dict[str, int] = {}
        for key, node in self._obsm.items():
            array_like = isinstance(node, h5py.Dataset | np.ndarray)
            numeric = array_like and node.dtype.kind in "iuf"
            if numeric and node.ndim == 2 and node.shape[0] == self.n_cells and node.shape[1] >= 2:
                out[key] = int(node.shape[1])
        return out

    def embedding(self, key: str) -> np.ndarray:
        """The ``obsm[key]`` matrix as float32 (cells × d)."""
        if key not in self.embedding_names():
            raise DataError(f"no embedding '{key}' in obsm", path=self.path)
        return np.asarray(self._obsm[key][()], dtype=np.float32)

    def require_obs(self, names: Sequence[str], purpose: str = "") -> None:
        """DataError naming the first of ``names`` that is not an obs column (and what is)."""
        missing = [n for n in names if n not in self.obs.columns]
        if missing:
            what = ", ".join(repr(str(m)) for m in missing)
            raise DataError(
                f"no obs column {what}{' ' + purpose if purpose else ''}",
                path=self.path,
                hint=f"available: {', '.join(map(str, self.obs.columns)) or 'none'}",
            )

    def categorical_obs(self, max_categories: int = 500) -> dict[str, int]:
        """obs columns usable as categories (categorical or few distinct strings) → count."""
        out: dict[str, int] = {}
        for col in self.obs.columns:
            s = self.obs[col]
            if isinstance(s.dtype, pd.CategoricalDtype):
                out[str(col)] = len(s.cat.categories)
            elif s.dtype == object or s.dtype == bool or pd.api.types.is_string_dtype(s):
                n = s.nunique(dropna=True)
                if n <= max_categories:
                    out[str(col)] = int(n)
        return out

    # -- choices -------------------------------------------------------------------------------
    def select(
        self,
        source: str = SOURCE_AUTO,
        symbols: str = SYMBOLS_AUTO,
        organism: str | None = None,
        merge_duplicates: bool = True,
        memory_threshold: int = DEFAULT_MEMORY_THRESHOLD,
        exclude_non_genes: bool = True,
    ) -> None:
        """Choose the expression source, gene symbols and organism (see :func:`open_dataset`)."""
        self.warnings = list(self.read_warnings)
        info = self._pick_source(source)
        node = self._node(info.name)
        est = info.nnz * (np.dtype(info.dtype).itemsize + 4)
        if info.storage == "dense":
            est = info.nnz * np.dtype(info.dtype).itemsize
        in_memory_file = self._h5.driver == "core"  # a Cell Ranger input, already in RAM
        self.backed = est > memory_threshold and not in_memory_file
        self.source = info
        if getattr(self, "matrix", None) is not None:
            self.matrix.close()
        self.matrix = H5Matrix(node, str(self.path), in_memory=not self.backed)
        self.backed = not self.matrix.in_memory  # CSC is always loaded
        if symbols == SYMBOLS_AUTO and self.format in readers.TENX_FORMATS:
            symbols = readers.SYMBOL_COLUMN  # var_names are the gene IDs
        self.symbols = resolve_symbols(self.gene_var, symbols, str(self.path))
        if self.symbols.note:
            self.warnings.append(self.symbols.note)
        self.non_genes = non_gene_features(self.gene_var, self.symbols)
        exclude = self.non_genes.mask if exclude_non_genes and self.non_genes.n else None
        self.vocabulary = build_vocabulary(
            self.symbols, merge_duplicates=merge_duplicates, path=str(self.path), exclude=exclude
        )
        self._vocabulary_warnings(exclude is not None)
        self.organism, self.organism_from = self._detect_organism(organism)

    def _vocabulary_warnings(self, excluded: bool) -> None:
        vocab = self.vocabulary
        if excluded and self.non_genes is not None:
            self.warnings.append(self.non_genes.describe())
        if vocab.repeated:
            self.warnings.append(duplicates_line(vocab))
        case_merged = [(w, cols) for w, cols in vocab.merged if len(set(cols)) > 1]
        for word, cols in case_merged[:5]:
            self.warnings.append(
                f"genes {', '.join(cols)} are one C2S word ({word}); their values are summed"
            )
        if len(case_merged) > 5:
            self.warnings.append(f"... {len(case_merged) - 5} more merged gene groups")
        if vocab.respaced:
            old, new = vocab.respaced[0]
            self.warnings.append(
                f"{len(vocab.respaced):,} gene names hold spaces, written with '_' in sentences "
                f"(e.g. '{old}' → {new.upper()})"
            )
        unnamed = int(np.sum(self.vocabulary.word_of_column < 0)) - vocab.excluded
        if unnamed:
            self.warnings.append(f"{unnamed:,} genes have no symbol and are left out of sentences")

    def _pick_source(self, source: str) -> SourceInfo:
        if source == SOURCE_AUTO:
            usable = [s for s in self.sources.values() if s.rankable]
            preferred = self._uns.get("counts_source")
            if isinstance(preferred, str):
                key = preferred
                if key not in (SOURCE_X, SOURCE_RAW) and not key.startswith(LAYER_PREFIX):
                    key = LAYER_PREFIX + key
                if key in self.sources and self.sources[key].rankable:
                    return self.sources[key]
            if not usable:
                kinds = "; ".join(f"{s.name}: {s.detail}" for s in self.sources.values())
                what = f"can be ranked ({kinds})" if kinds else "found (no X, raw.X or layers)"
                raise DataError(
                    f"no expression source {what}",
                    path=self.path,
                    hint="cell sentences need non-negative, finite counts or (log-)normalised "
                    "values; add raw counts (raw.X or a counts layer) to the file",
                )
            order = list(self.sources)
            return max(usable, key=lambda s: (s.n_genes, -order.index(s.name)))
        key = source
        if key not in (SOURCE_X, SOURCE_RAW) and not key.startswith(LAYER_PREFIX):
            key = LAYER_PREFIX + key  # a bare layer name
        if key not in self.sources:
            raise DataError(
                f"no expression source '{source}'",
                path=self.path,
                hint=f"available: {', '.join(self.sources) or 'none'}",
            )
        info = self.sources[key]
        if not info.rankable:
            raise DataError(
                f"expression source {info.name} cannot be ranked: {info.detail}",
                path=self.path,
                hint=_kind_hint(info.kind),
            )
        return info

    def _node(self, name: str) -> h5py.Dataset | h5py.Group:
        if name == SOURCE_X:
            return self._h5["X"]
        if name == SOURCE_RAW:
            return self._h5["raw/X"] if "raw/X" in self._h5 else self._h5["raw.X"]
        return self._h5["layers"][name[len(LAYER_PREFIX) :]]

    def _detect_organism(self, override: str | None) -> tuple[str, str]:
        if override:
            return normalize_organism(override, self.path), "user"
        for col in ("organism", "species"):
            if col in self.obs.columns:
                values = self.obs[col].dropna().astype(str).unique()
                if len(values) == 1 and (found := self._known_organism(values[0], col)):
                    return found, f"obs['{col}']"
        for key in ("organism", "species"):
            if key in self._uns and (found := self._known_organism(str(self._uns[key]), key)):
                return found, f"uns['{key}']"
        names = np.asarray(self.gene_var.index.astype(str))
        sample = names[:: max(1, len(names) // 2000)]
        if np.mean([n.startswith(MOUSE_PREFIX) for n in sample]) > 0.5:
            return MOUSE, "Ensembl IDs (ENSMUSG)"
        symbols = [s for s in self.symbols.symbols[:: max(1, len(names) // 2000)] if s]
        mixed = [s for s in symbols if s[:1].isupper() and any(c.islower() for c in s[1:])]
        if symbols and len(mixed) > 0.5 * len(symbols):
            return MOUSE, "gene symbol casing (e.g. Cd74)"
        return HUMAN, "default"

    def _known_organism(self, value: str, where: str) -> str | None:
        name = normalize_organism(value, self.path, strict=False)
        if name in ORGANISMS:
            return name
        self.warnings.append(
            f"organism '{value}' in {where} is not one C2S models know (Homo sapiens, Mus "
            "musculus); guessing from gene names — set it with --organism"
        )
        return None

    def info(self) -> DatasetInfo:
        """A plain description of the file and the current choices."""
        return DatasetInfo(
            path=str(self.path),
            n_cells=self.n_cells,
            n_genes=self.n_genes,
            backed=self.backed,
            sources=list(self.sources.values()),
            source=self.source.name,
            symbols_source=self.symbols.source,
            symbols_mapped=self.symbols.n_mapped,
            symbols_note=self.symbols.note,
            organism=self.organism,
            organism_from=self.organism_from,
            embeddings=self.embedding_names(),
            obs_columns=self.categorical_obs(),
            warnings=list(self.warnings),
            format=self.format,
            duplicates_merged=[f"{n} ({c} columns)" for n, c in self.vocabulary.repeated],
            non_genes_excluded=self.vocabulary.excluded,
            non_genes_note=self.non_genes.describe()
            if self.vocabulary.excluded and self.non_genes
            else "",
            symbols_respaced=len(self.vocabulary.respaced),
        )


def duplicates_line(vocab: Vocabulary, shown: int = 5) -> str:
    """``2 gene names repeated, merged: GENE_A (2 columns), ...`` for warnings and the panel."""
    items = [f"{name} ({n} columns)" for name, n in vocab.repeated]
    more = f", ... ({len(items) - shown:,} more)" if len(items) > shown else ""
    return (
        f"{len(items):,} gene names repeated, merged (values summed): "
        + ", ".join(items[:shown])
        + more
    )


def normalize_organism(value: str, path: Path | str, strict: bool = True) -> str:
    """Map organism spellings (human, hsapiens, NCBITaxon:9606, mouse, ...) to C2S names."""
    v = value.strip().lower().replace("_", " ")
    if v in ("human", "homo sapiens", "hsapiens", "h. sapiens", "ncbitaxon:9606", "9606", "hs"):
        return HUMAN
    if v in ("mouse", "mus musculus", "mmusculus", "m. musculus", "ncbitaxon:10090", "10090", "mm"):
        return MOUSE
    if strict:
        raise DataError(
            f"unknown organism '{value}'",
            path=path,
            hint="C2S models know 'Homo sapiens' and 'Mus musculus'",
        )
    return value


def _kind_hint(kind: str) -> str:
    if kind == KIND_SCALED:
        return "use raw counts or log-normalised values (e.g. --source raw or a counts layer)"
    if kind == KIND_INVALID:
        return "the matrix contains NaN or infinite values; fix or choose another source"
    return "the matrix has no expressed values; choose another source"


def classify_values(values: np.ndarray, dtype: np.dtype) -> tuple[str, float, str]:
    """Classify stored values: counts, normalized, log-normalized, scaled, invalid or empty."""
    if values.size == 0 or not np.any(values):
        return KIND_EMPTY, 0.0, "all sampled values are zero"
    v = values.astype(np.float64, copy=False)
    if not np.all(np.isfinite(v)):
        n_bad = int(np.sum(~np.isfinite(v)))
        return KIND_INVALID, float("nan"), f"{n_bad:,} NaN/infinite values in a sample"
    vmax, vmin = float(v.max()), float(v.min())
    if vmin < 0:
        return KIND_SCALED, vmax, f"negative values (min {vmin:.3g}): scaled or centred data"
    if dtype.kind in "iu" or np.all(v == np.round(v)):
        return KIND_COUNTS, vmax, f"integer counts (max {vmax:.0f})"
    if vmax <= 30:
        return KIND_LOGNORM, vmax, f"log-normalised values (max {vmax:.3g})"
    return KIND_NORMALIZED, vmax, f"normalised, not log-transformed (max {vmax:.3g})"


def _describe_source(name: str, node: h5py.Dataset | h5py.Group, path: str) -> SourceInfo:
    lay = matrix_layout(node, path)
    try:
        if lay.storage == "dense":
            rows = min(lay.shape[0], _SAMPLE_ROWS)
            sample = np.asarray(node[:rows]).ravel() if lay.shape[0] else np.empty(0)
        else:
            n = min(lay.nnz, 200_000)
            sample = np.asarray(node["data"][:n]) if n else np.empty(0)
            if lay.nnz > n:  # also look at the end: files are often sorted by batch
                sample = np.concatenate([sample, np.asarray(node["data"][lay.nnz - n :])])
    except OSError as exc:
        raise InputFileError(
            f"cannot read '{node.name}' ({exc}); the file looks truncated or corrupt",
            path=path,
            hint="copy or download the file again",
        ) from exc
    if lay.dtype.kind not in "iufb":
        kind, vmax, detail = KIND_INVALID, float("nan"), f"values of type {lay.dtype}"
    else:
        kind, vmax, detail = classify_values(sample, lay.dtype)
    return SourceInfo(
        name, lay.storage, str(lay.dtype), lay.shape[0], lay.shape[1], lay.nnz, kind, vmax, detail
    )


def _read_elem(node: h5py.Group | h5py.Dataset) -> Any:
    return read_elem(node)


def _read_frame(h5: h5py.File, key: str, path: str) -> pd.DataFrame:
    try:
        frame = _read_elem(h5[key])
    except Exception as exc:  # noqa: BLE001 - any failure here means an unreadable AnnData part
        raise InputFileError(
            f"cannot read '{key}' ({exc.__class__.__name__}: {exc})",
            path=path,
            hint="the file may be damaged or written by a very old anndata; re-save it with a "
            "current anndata/scanpy",
        ) from exc
    if isinstance(frame, np.ndarray) and frame.dtype.names:
        return _legacy_frame(frame, h5, key.replace("/", "."))
    if not isinstance(frame, pd.DataFrame):
        raise InputFileError(f"'{key}' is not a table", path=path, hint="not a valid AnnData file")
    return frame


def _legacy_frame(records: np.ndarray, h5: h5py.File, key: str) -> pd.DataFrame:
    """obs/var written by anndata < 0.7: a record array, categories in ``uns/<col>_categories``."""
    columns: dict[str, Any] = {}
    for name in records.dtype.names:
        values = records[name]
        if values.dtype.kind == "S":
            values = np.char.decode(values, "utf-8")
        cats = h5.get(f"uns/{name}_categories")
        if isinstance(cats, h5py.Dataset) and values.dtype.kind in "iu":
            labels = [c.decode() if isinstance(c, bytes) else str(c) for c in cats[()]]
            values = pd.Categorical.from_codes(values.astype(np.int64), categories=labels)
        columns[name] = values
    index = columns.pop("index", None)
    frame = pd.DataFrame(columns)
    if index is not None:
        frame.index = pd.Index(np.asarray(index, dtype=str))
    return frame


def _uns_hints(h5: h5py.File) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    uns = h5.get("uns")
    if not isinstance(uns, h5py.Group):
        return hints
    for key in ("organism", "species"):
        node = uns.get(key)
        if isinstance(node, h5py.Dataset) and node.shape == ():
            val = node[()]
            hints[key] = val.decode() if isinstance(val, bytes) else str(val)
    prep = uns.get("c2s_preprocess")
    if isinstance(prep, h5py.Group) and isinstance(prep.get("counts_source"), h5py.Dataset):
        node = prep["counts_source"]
        if node.shape == ():
            val = node[()]
            hints["counts_source"] = val.decode() if isinstance(val, bytes) else str(val)
    log1p = uns.get("log1p")
    if isinstance(log1p, h5py.Group) and "base" in log1p:
        base = log1p["base"][()]
        empty = base is None or isinstance(base, h5py.Empty) or np.size(base) == 0
        hints["log1p_base"] = None if empty else float(base)
    elif isinstance(log1p, h5py.Group):
        hints["log1p_base"] = None
    return hints


def open_dataset(
    path: str | Path,
    *,
    source: str = SOURCE_AUTO,
    symbols: str = SYMBOLS_AUTO,
    organism: str | None = None,
    merge_duplicates: bool = True,
    memory_threshold: int = DEFAULT_MEMORY_THRESHOLD,
    exclude_non_genes: bool = True,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> Dataset:
    """Open ``path`` read-only, describe every expression source and make the initial choices.

    ``path`` is an ``.h5ad`` file, a Cell Ranger ``.h5`` (v3+ or v2) or a Cell Ranger matrix
    folder (recognised by content; Cell Ranger inputs keep Gene Expression features only).
    ``source``: ``auto`` (``uns['c2s_preprocess']['counts_source']`` when rankable, else the
    rankable source with most genes; X before raw before layers), ``X``, ``raw`` or
    ``layer:NAME``. ``symbols``: ``auto``, ``var_names``, ``ensembl-map`` or a ``var`` column.
    ``organism``: override; otherwise from obs/uns/gene names, default human. Exact duplicate
    gene names are summed into one word unless ``merge_duplicates`` is False (then an error);
    spike-ins and non-gene biotypes are left out unless ``exclude_non_genes`` is False.
    Matrices estimated above ``memory_threshold`` bytes are read from the file chunk by chunk.
    Raises :class:`InputFileError` / :class:`DataError` with a message naming the file.
    """
    p = Path(path)
    fmt, h5, read_warnings = _open_input(p, progress, cancel)
    try:
        ds = _build(p, h5, progress, cancel)
        ds.format, ds.read_warnings = fmt, read_warnings
        check_cancel(cancel)
        progress(0.8, "choosing expression source and gene symbols")
        ds.select(source, symbols, organism, merge_duplicates, memory_threshold, exclude_non_genes)
        progress(1.0, "opened")
    except CORRUPT_FILE_ERRORS as exc:  # the HDF5 library on a damaged file
        h5.close()
        raise corrupt_file(p, exc) from exc
    except BaseException:
        h5.close()
        raise
    return ds


@contextlib.contextmanager
def source_view(dataset: Dataset, source: str) -> Iterator[Dataset]:
    """``dataset`` itself when ``source`` is its chosen source, else its file opened on
    ``source`` for the block (same organism, duplicates summed, read chunk by chunk when
    ``dataset`` is)."""
    if source == dataset.source.name:
        yield dataset
        return
    with open_dataset(
        dataset.path,
        source=source,
        organism=dataset.organism,
        merge_duplicates=True,
        memory_threshold=0 if dataset.backed else DEFAULT_MEMORY_THRESHOLD,
    ) as other:
        yield other


def _open_input(
    p: Path, progress: ProgressFn, cancel: CancelToken | None
) -> tuple[str, h5py.File, list[str]]:
    """(format, open HDF5 file, reader warnings): the file itself, or Cell Ranger data in RAM."""
    if p.is_dir():
        progress(0.02, "reading the Cell Ranger matrix folder")
        data = _read_cellranger(p, readers.FORMAT_10X_MTX)
        check_cancel(cancel)
        return data.format, readers.in_memory_h5(data.adata), data.warnings
    _check_hdf5_file(p)
    check_hdf5_finishes(p, progress=progress, cancel=cancel)
    check_cancel(cancel)
    h5 = _open_h5(p)
    try:
        fmt = readers.hdf5_format(h5, p)
    except CORRUPT_FILE_ERRORS as exc:
        h5.close()
        raise corrupt_file(p, exc) from exc
    except BaseException:
        h5.close()
        raise
    if fmt == readers.FORMAT_H5AD:
        return fmt, h5, []
    h5.close()
    progress(0.02, "reading the Cell Ranger file")
    data = _read_cellranger(p, fmt)
    check_cancel(cancel)
    return fmt, readers.in_memory_h5(data.adata), data.warnings


def _read_cellranger(p: Path, fmt: str) -> readers.TenxData:
    try:
        return readers.read_tenx(p, fmt)
    except CORRUPT_FILE_ERRORS as exc:  # h5py on a damaged Cell Ranger file
        raise corrupt_file(p, exc) from exc


CORRUPT_FILE_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError)
"""What h5py and numpy raise on damaged HDF5 structures (after the file opened)."""


def corrupt_file(path: Path | str, exc: BaseException) -> InputFileError:
    """A damaged-file error naming ``path``; the traceback goes to the log for diagnosis."""
    from .logs import log_exception

    log_exception(exc, f"reading {path}")
    return InputFileError(
        f"the file is damaged and cannot be read ({exc.__class__.__name__}: {exc})",
        path=path,
        hint="copy or download the file again",
    )


def _check_hdf5_file(p: Path) -> None:
    if not p.exists():
        raise InputFileError("file not found", path=p, hint="check the path")
    if not p.is_file():
        raise InputFileError("not a file", path=p, hint="give the path of an .h5ad file")
    if p.stat().st_size == 0:
        raise InputFileError("the file is empty (0 bytes)", path=p, hint="copy it again")
    try:
        with open(p, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise InputFileError(f"cannot read the file ({exc.strerror})", path=p) from exc
    if head != b"\x89HDF\r\n\x1a\n" and not h5py.is_hdf5(p):
        name = p.name.lower()
        if name.startswith(("matrix.mtx", "features.tsv", "genes.tsv", "barcodes.tsv")):
            raise InputFileError(
                "is one file of a Cell Ranger matrix folder",
                path=p,
                hint=f"open the folder that holds it ({p.parent}) instead",
            )
        raise InputFileError(
            "not an HDF5/.h5ad file",
            path=p,
            hint="C2S Desktop opens AnnData .h5ad files, Cell Ranger .h5 files and matrix "
            "folders; convert other formats with scanpy first",
        )


def _open_h5(p: Path) -> h5py.File:
    try:
        return h5py.File(p, "r")
    except OSError as exc:
        raise InputFileError(
            f"cannot open the HDF5 file ({exc}); it looks truncated or corrupt",
            path=p,
            hint="copy or download the file again",
        ) from exc


def _build(
    p: Path, h5: h5py.File, progress: ProgressFn = no_progress, cancel: CancelToken | None = None
) -> Dataset:
    path = str(p)
    if "obs" not in h5 or "var" not in h5:
        raise InputFileError(
            "an HDF5 file but not AnnData (no obs/var)",
            path=p,
            hint="open an .h5ad file written by anndata or scanpy",
        )
    progress(0.05, "reading cell annotations (obs)")
    obs = _read_frame(h5, "obs", path)
    check_cancel(cancel)
    progress(0.4, "reading gene annotations (var)")
    var = _read_frame(h5, "var", path)
    check_cancel(cancel)
    raw_key = "raw" if "raw/X" in h5 else "raw." if "raw.X" in h5 else None
    raw_var = None
    if raw_key and (f"{raw_key}/var" in h5 or f"{raw_key}var" in h5):
        raw_var = _read_frame(h5, "raw/var" if raw_key == "raw" else "raw.var", path)
    obsm_node = h5.get("obsm")
    obsm: dict[str, Any] = {}
    if isinstance(obsm_node, h5py.Group):
        obsm = dict(obsm_node.items())
    elif isinstance(obsm_node, h5py.Dataset) and obsm_node.dtype.names:  # anndata < 0.7
        records = obsm_node[()]
        obsm = {name: np.asarray(records[name]) for name in obsm_node.dtype.names}
    ds = Dataset(p, h5, obs, var, raw_var, obsm, _uns_hints(h5))
    if len(obs) == 0 or len(var) == 0:
        raise DataError(
            f"the dataset has {len(obs):,} cells and {len(var):,} genes",
            path=p,
            hint="nothing to analyse: the file needs at least one cell and one gene",
        )
    nodes: list[tuple[str, h5py.Dataset | h5py.Group, int]] = []
    if "X" in h5:
        nodes.append((SOURCE_X, h5["X"], len(var)))
    if raw_key:
        raw_x = h5["raw/X" if raw_key == "raw" else "raw.X"]
        nodes.append((SOURCE_RAW, raw_x, len(raw_var) if raw_var is not None else -1))
    layers = h5.get("layers")
    if isinstance(layers, h5py.Group):
        nodes.extend((LAYER_PREFIX + k, v, len(var)) for k, v in layers.items())
    for i, (name, node, n_genes) in enumerate(nodes):
        check_cancel(cancel)
        progress(0.5 + 0.3 * i / len(nodes), f"inspecting {name}")
        info = _describe_source(name, node, path)
        if info.n_cells != len(obs) or (n_genes >= 0 and info.n_genes != n_genes):
            raise InputFileError(
                f"{name} has shape {info.n_cells} × {info.n_genes} but the file lists "
                f"{len(obs)} cells and {n_genes} genes",
                path=p,
                hint="the file is inconsistent; re-save it with anndata",
            )
        ds.sources[name] = info
    return ds
