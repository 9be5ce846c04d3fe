"""Cell Ranger outputs (``filtered_feature_bc_matrix.h5`` and its matrix folder) as AnnData.

Formats are recognised by content, not by name: an HDF5 file with ``obs``/``var`` is AnnData, one
with a ``matrix/`` group is a Cell Ranger v3+ ``.h5``, one whose top-level groups hold
``barcodes``/``data``/``indices``/``indptr``/``shape`` is a Cell Ranger v2 ``.h5``; a folder with
``matrix.mtx[.gz]``, ``features.tsv[.gz]`` (or ``genes.tsv``) and ``barcodes.tsv[.gz]`` is a
matrix folder. They are read with scanpy's readers (imported only then), keep Gene Expression
features only, and are held as an AnnData written into an in-memory HDF5 file, so every later
step reads them exactly as it reads an ``.h5ad``. Nothing is written to the input.
"""

from __future__ import annotations

import gzip
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import h5py
import numpy as np
import pandas as pd

from .anndata_io import write_elem
from .errors import DataError, InputFileError

FORMAT_H5AD = "h5ad"
FORMAT_10X_H5_V3 = "10x-h5-v3"
FORMAT_10X_H5_V2 = "10x-h5-v2"
FORMAT_10X_MTX = "10x-mtx"
TENX_FORMATS = (FORMAT_10X_H5_V3, FORMAT_10X_H5_V2, FORMAT_10X_MTX)
FORMAT_NAMES = {
    FORMAT_H5AD: "AnnData .h5ad",
    FORMAT_10X_H5_V3: "Cell Ranger .h5 (v3+)",
    FORMAT_10X_H5_V2: "Cell Ranger .h5 (v2)",
    FORMAT_10X_MTX: "Cell Ranger matrix folder",
}
GENE_EXPRESSION = "Gene Expression"
SYMBOL_COLUMN = "gene_symbols"
"""The var column that holds the gene names of a Cell Ranger input (var_names are gene IDs)."""

_MATRIX_KEYS = frozenset({"barcodes", "data", "indices", "indptr", "shape"})
_HINT_AGAIN = "copy the Cell Ranger output again"


@dataclass
class TenxData:
    """A Cell Ranger input read into memory: the AnnData, its format and what was left out."""

    adata: object  # anndata.AnnData (imported lazily)
    format: str
    warnings: list[str] = field(default_factory=list)


# -- recognising -------------------------------------------------------------------------------
def hdf5_format(h5: h5py.File, path: str | Path) -> str:
    """``h5ad``, ``10x-h5-v3`` or ``10x-h5-v2`` for an open HDF5 file; else InputFileError."""
    keys = list(h5.keys())
    if "obs" in h5 and "var" in h5:
        return FORMAT_H5AD
    if isinstance(h5.get("matrix"), h5py.Group):
        return FORMAT_10X_H5_V3
    groups = [k for k in keys if isinstance(h5.get(k), h5py.Group)]
    if groups and all(set(h5[k].keys()) >= _MATRIX_KEYS for k in groups):
        return FORMAT_10X_H5_V2
    shown = ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "") if keys else "none"
    raise InputFileError(
        f"an HDF5 file but neither AnnData nor Cell Ranger (top-level groups: {shown})",
        path=path,
        hint="open an .h5ad file (anndata/scanpy) or a Cell Ranger filtered_feature_bc_matrix.h5",
    )


@dataclass(frozen=True)
class MatrixFolder:
    """The three files of a Cell Ranger matrix folder (``legacy``: v2 ``genes.tsv``)."""

    matrix: Path
    features: Path
    barcodes: Path
    legacy: bool


def _member(folder: Path, *names: str) -> Path | None:
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def matrix_folder(folder: Path) -> MatrixFolder:
    """The matrix folder's files; InputFileError naming what is missing."""
    matrix = _member(folder, "matrix.mtx")
    if matrix is None:
        inner = folder / "filtered_feature_bc_matrix"
        if inner.is_dir():
            return matrix_folder(inner)
        what = "an empty folder" if not any(folder.iterdir()) else "a folder"
        raise InputFileError(
            f"{what} without matrix.mtx[.gz]",
            path=folder,
            hint="open a Cell Ranger filtered_feature_bc_matrix folder (matrix.mtx.gz, "
            "features.tsv.gz, barcodes.tsv.gz) or an .h5ad/.h5 file",
        )
    features = _member(folder, "features.tsv")
    legacy = False
    if features is None:
        features, legacy = _member(folder, "genes.tsv"), True
    if features is None:
        raise InputFileError(
            "a matrix folder without features.tsv[.gz] or genes.tsv",
            path=folder,
            hint="the gene list of the matrix is missing; " + _HINT_AGAIN,
        )
    barcodes = _member(folder, "barcodes.tsv")
    if barcodes is None:
        raise InputFileError(
            "a matrix folder without barcodes.tsv[.gz]",
            path=folder,
            hint="the cell barcodes of the matrix are missing; " + _HINT_AGAIN,
        )
    return MatrixFolder(matrix, features, barcodes, legacy)


def is_matrix_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a Cell Ranger matrix."""
    p = Path(path)
    if not p.is_dir():
        return False
    try:
        matrix_folder(p)
    except (InputFileError, OSError):
        return False
    return True


# -- reading -----------------------------------------------------------------------------------
@contextmanager
def _quiet() -> Iterator[None]:
    """scanpy/anndata warnings (non-unique names, ...) are reported by the app in its own words."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _mtx_shape(path: Path) -> tuple[int, int, int]:
    """(rows, columns, entries) from a Matrix Market header."""
    try:
        with _open_text(path) as fh:
            first = fh.readline()
            if not first.startswith("%%MatrixMarket"):
                raise InputFileError(
                    "is not a Matrix Market file (no %%MatrixMarket header)",
                    path=path,
                    hint=_HINT_AGAIN,
                )
            for line in fh:
                if line.strip() and not line.startswith("%"):
                    rows, cols, nnz = (int(v) for v in line.split()[:3])
                    return rows, cols, nnz
    except (OSError, EOFError, ValueError) as exc:
        raise InputFileError(
            f"cannot read the matrix header ({exc.__class__.__name__}: {exc})",
            path=path,
            hint="the file is damaged; " + _HINT_AGAIN,
        ) from exc
    raise InputFileError("the Matrix Market file has no size line", path=path, hint=_HINT_AGAIN)


def _read_table(path: Path) -> pd.DataFrame:
    try:
        with _open_text(path) as fh:
            table = pd.read_csv(fh, sep="\t", header=None, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (OSError, EOFError, ValueError, pd.errors.ParserError) as exc:
        raise InputFileError(
            f"cannot read the table ({exc.__class__.__name__}: {exc})",
            path=path,
            hint="the file is damaged; " + _HINT_AGAIN,
        ) from exc
    return table


def read_matrix_folder(folder: str | Path) -> TenxData:
    """Read a Cell Ranger matrix folder (scanpy's Matrix Market reader + its two tables)."""
    p = Path(folder)
    files = matrix_folder(p)
    rows, cols, _ = _mtx_shape(files.matrix)
    features, barcodes = _read_table(files.features), _read_table(files.barcodes)
    name = files.features.name.removesuffix(".gz")
    if features.shape[1] < 2:
        raise InputFileError(
            f"{name} needs at least two columns (gene ID, gene name), found {features.shape[1]}",
            path=files.features,
            hint=_HINT_AGAIN,
        )
    if len(features) != rows:
        raise InputFileError(
            f"{name} lists {len(features):,} features but {files.matrix.name} has {rows:,} rows",
            path=p,
            hint="the files come from different runs; " + _HINT_AGAIN,
        )
    if len(barcodes) != cols:
        raise InputFileError(
            f"barcodes.tsv lists {len(barcodes):,} barcodes but {files.matrix.name} has "
            f"{cols:,} columns",
            path=p,
            hint="the files come from different runs; " + _HINT_AGAIN,
        )
    import anndata as ad
    import scanpy as sc

    try:
        with _quiet():
            counts = sc.read_mtx(files.matrix).X.T.tocsr()
    except Exception as exc:  # noqa: BLE001 - any parse failure means a damaged matrix file
        raise InputFileError(
            f"cannot read {files.matrix.name} ({exc.__class__.__name__}: {exc})",
            path=files.matrix,
            hint="the file is damaged; " + _HINT_AGAIN,
        ) from exc
    var = pd.DataFrame(
        {SYMBOL_COLUMN: features[1].to_numpy()},
        index=pd.Index(features[0].to_numpy(), name=None),
    )
    var["feature_types"] = features[2].to_numpy() if features.shape[1] > 2 else GENE_EXPRESSION
    obs = pd.DataFrame(index=pd.Index(barcodes[0].to_numpy()))
    with _quiet():
        adata = ad.AnnData(X=counts, obs=obs, var=var)
    return _finish(adata, FORMAT_10X_MTX, p)


def read_10x_h5(path: str | Path, fmt: str | None = None) -> TenxData:
    """Read a Cell Ranger ``.h5`` (v3+ or v2, every genome) with ``scanpy.read_10x_h5``."""
    p = Path(path)
    with h5py.File(p, "r") as h5:
        fmt = fmt or hdf5_format(h5, p)
        genomes = (
            [k for k in h5 if isinstance(h5[k], h5py.Group)] if fmt == FORMAT_10X_H5_V2 else []
        )
        _check_10x_h5(h5, p, fmt)
    import anndata as ad
    import scanpy as sc

    try:
        with _quiet():
            if fmt == FORMAT_10X_H5_V3:
                adata = sc.read_10x_h5(p, gex_only=False)
            else:
                parts = [sc.read_10x_h5(p, genome=g) for g in genomes]
                if any(not part.obs_names.equals(parts[0].obs_names) for part in parts[1:]):
                    raise InputFileError(
                        f"the genomes {', '.join(genomes)} list different barcodes",
                        path=p,
                        hint="open one genome's matrix folder instead",
                    )
                adata = parts[0] if len(parts) == 1 else ad.concat(parts, axis=1, merge="first")
                if len(genomes) > 1:
                    adata.var["genome"] = np.repeat(genomes, [part.n_vars for part in parts])
    except InputFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - scanpy's reader on a damaged file
        raise InputFileError(
            f"the Cell Ranger file is damaged ({exc.__class__.__name__}: {exc})",
            path=p,
            hint=_HINT_AGAIN,
        ) from exc
    symbols = np.asarray(adata.var_names.astype(str))
    ids = adata.var.pop("gene_ids") if "gene_ids" in adata.var else pd.Series(symbols)
    adata.var.insert(0, SYMBOL_COLUMN, symbols)
    adata.var.index = pd.Index(np.asarray(ids, dtype=str))
    if "feature_types" not in adata.var:
        adata.var["feature_types"] = GENE_EXPRESSION
    return _finish(adata, fmt, p)


def _check_10x_h5(h5: h5py.File, path: Path, fmt: str) -> None:
    """Consistent shapes before scanpy reads the arrays (its errors are less precise)."""
    groups = (
        ["matrix"] if fmt == FORMAT_10X_H5_V3 else [k for k in h5 if isinstance(h5[k], h5py.Group)]
    )
    for key in groups:
        g = h5[key]
        missing = sorted(_MATRIX_KEYS - set(g.keys()))
        if fmt == FORMAT_10X_H5_V3 and not isinstance(g.get("features"), h5py.Group):
            missing.append("features")
        if missing:
            raise InputFileError(
                f"the Cell Ranger group '{key}' has no {', '.join(missing)}",
                path=path,
                hint="the file is incomplete; " + _HINT_AGAIN,
            )
        shape = np.asarray(g["shape"][()]).ravel()
        names = g["features/id"] if fmt == FORMAT_10X_H5_V3 else g.get("genes")
        if names is None or len(shape) != 2:
            raise InputFileError(
                f"the Cell Ranger group '{key}' has no feature list or a bad shape",
                path=path,
                hint=_HINT_AGAIN,
            )
        n_genes, n_cells = int(shape[0]), int(shape[1])
        checks = (
            (names.shape[0], n_genes, "features", "rows"),
            (g["barcodes"].shape[0], n_cells, "barcodes", "columns"),
            (g["indptr"].shape[0], n_cells + 1, "column pointers (indptr)", "columns + 1"),
            (g["indices"].shape[0], g["data"].shape[0], "row indices", "stored values"),
        )
        for found, expected, what, of in checks:
            if found != expected:
                raise InputFileError(
                    f"'{key}' lists {found:,} {what} but the matrix has {expected:,} {of}",
                    path=path,
                    hint="the file is inconsistent or damaged; " + _HINT_AGAIN,
                )


def _finish(adata, fmt: str, path: Path) -> TenxData:  # noqa: ANN001 - anndata.AnnData
    """Keep Gene Expression, check the matrix, say what was left out."""
    out = TenxData(adata, fmt)
    types = adata.var["feature_types"].astype(str)
    counts = types.value_counts()
    dropped = {t: int(n) for t, n in counts.items() if t != GENE_EXPRESSION}
    if dropped:
        keep = (types == GENE_EXPRESSION).to_numpy()
        if not keep.any():
            raise DataError(
                f"no Gene Expression features (the file holds {_listing(dropped)})",
                path=path,
                hint="cell sentences need gene expression; open the run's gene expression matrix",
            )
        with _quiet():
            adata = adata[:, keep].copy()
        out.adata = adata
        out.warnings.append(
            f"kept {int(keep.sum()):,} Gene Expression features; left out {_listing(dropped)}"
        )
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise DataError(
            f"the matrix has {adata.n_obs:,} cells and {adata.n_vars:,} genes",
            path=path,
            hint="nothing to analyse: the matrix needs at least one cell and one gene",
        )
    try:
        adata.X.check_format(full_check=True)
    except (ValueError, TypeError) as exc:
        raise InputFileError(f"the matrix is damaged ({exc})", path=path, hint=_HINT_AGAIN) from exc
    return out


def _listing(counts: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {t}" for t, n in counts.items()) + " features"


def read_tenx(path: str | Path, fmt: str | None = None) -> TenxData:
    """Read any Cell Ranger input: a matrix folder or a ``.h5``."""
    p = Path(path)
    return read_matrix_folder(p) if p.is_dir() else read_10x_h5(p, fmt)


def in_memory_h5(adata) -> h5py.File:  # noqa: ANN001 - anndata.AnnData
    """``adata`` written with anndata's element writer into an HDF5 file held in memory."""
    h5 = h5py.File(f"c2s-{uuid.uuid4().hex}.h5ad", "w", driver="core", backing_store=False)
    try:
        with _quiet():
            write_elem(h5, "/", adata)
    except BaseException:
        h5.close()
        raise
    return h5


def is_cellranger(path: str | Path) -> bool:
    """Whether ``path`` is a Cell Ranger input (a matrix folder or a Cell Ranger ``.h5``)."""
    p = Path(path)
    if p.is_dir():
        return True
    try:
        with h5py.File(p, "r") as h5:
            return hdf5_format(h5, p) in TENX_FORMATS
    except (OSError, InputFileError):
        return False


def read_anndata(path: str | Path):  # noqa: ANN201 - anndata.AnnData
    """The input as an in-memory AnnData: an ``.h5ad`` as stored, a Cell Ranger input as read."""
    import anndata as ad

    p = Path(path)
    if not p.is_dir():
        with h5py.File(p, "r") as h5:
            fmt = hdf5_format(h5, p)
        if fmt == FORMAT_H5AD:
            return ad.read_h5ad(p)
    return read_tenx(p).adata
