"""Row-chunked, read-only access to an expression matrix stored in an ``.h5ad`` file.

A matrix is an HDF5 dataset (dense) or a group holding ``data``/``indices``/``indptr`` (CSR or
CSC, as anndata writes them). :class:`H5Matrix` reads row chunks as ``scipy.sparse.csr_matrix``
either from memory (small files, loaded once) or straight from the file (backed, large files),
so memory stays bounded by the chunk size. Nothing is ever written to the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import h5py
import numpy as np
import scipy.sparse as sp

from .errors import DataError, InputFileError

STORAGE_DENSE = "dense"
STORAGE_CSR = "csr"
STORAGE_CSC = "csc"


@dataclass(frozen=True)
class MatrixLayout:
    """How a matrix is stored: ``storage`` (dense/csr/csc), shape, value dtype, stored entries."""

    storage: str
    shape: tuple[int, int]
    dtype: np.dtype
    nnz: int


def matrix_layout(node: h5py.Dataset | h5py.Group, path: str) -> MatrixLayout:
    """Describe the matrix stored at ``node``; raise :class:`InputFileError` if it is not one."""
    if isinstance(node, h5py.Dataset):
        if node.ndim != 2:
            raise InputFileError(
                f"'{node.name}' is not a 2-D matrix (shape {node.shape})",
                path=path,
                hint="the file does not follow the AnnData layout",
            )
        shape = (int(node.shape[0]), int(node.shape[1]))
        return MatrixLayout(STORAGE_DENSE, shape, node.dtype, shape[0] * shape[1])
    encoding = node.attrs.get("encoding-type", node.attrs.get("h5sparse_format", ""))
    if isinstance(encoding, bytes):
        encoding = encoding.decode()
    storage = {"csr_matrix": STORAGE_CSR, "csr": STORAGE_CSR, "csc_matrix": STORAGE_CSC}.get(
        str(encoding), STORAGE_CSC if str(encoding) == "csc" else ""
    )
    shape_attr = node.attrs.get("shape", node.attrs.get("h5sparse_shape"))
    if not storage or shape_attr is None or not {"data", "indices", "indptr"} <= set(node):
        raise InputFileError(
            f"'{node.name}' is not a matrix anndata can read (encoding '{encoding}')",
            path=path,
            hint="re-save the file with a current anndata/scanpy",
        )
    shape = (int(shape_attr[0]), int(shape_attr[1]))
    data = node["data"]
    return MatrixLayout(storage, shape, data.dtype, int(data.shape[0]))


class H5Matrix:
    """Read-only row access to one matrix of an open ``.h5ad`` file.

    ``in_memory=True`` loads the matrix once (as CSR); otherwise every chunk is read from the file.
    A CSC matrix cannot be read by rows without touching the whole file, so it is always loaded
    (converted to CSR) and refused when larger than ``max_memory_bytes``.
    """

    def __init__(
        self,
        node: h5py.Dataset | h5py.Group,
        path: str,
        *,
        in_memory: bool,
        max_memory_bytes: int = 8 * 1024**3,
    ) -> None:
        self.node = node
        self.path = path
        self.layout = matrix_layout(node, path)
        _check_dtype(self.layout.dtype, node.name, path)
        self._csr: sp.csr_matrix | None = None
        self._indptr: np.ndarray | None = None
        self._maps: tuple[_MappedArray, _MappedArray] | None = None
        if self.layout.storage == STORAGE_CSC:
            need = self.layout.nnz * (self.layout.dtype.itemsize + 8)
            if need > max_memory_bytes:
                raise DataError(
                    f"'{node.name}' is stored column-wise (CSC) and too large to convert in memory "
                    f"({need / 1024**3:.1f} GB)",
                    path=path,
                    hint="convert it to CSR first, e.g. adata.X = adata.X.tocsr() in scanpy",
                )
            in_memory = True
        self.in_memory = in_memory
        if in_memory:
            self._csr = self._load_all()
        elif self.layout.storage == STORAGE_CSR:
            data, indices = _mapped(node["data"]), _mapped(node["indices"])
            if data is not None and indices is not None:
                self._maps = (data, indices)

    @property
    def shape(self) -> tuple[int, int]:
        return self.layout.shape

    def close(self) -> None:
        """Release the file descriptors of the direct-read path (idempotent)."""
        if self._maps is not None:
            for m in self._maps:
                m.close()
            self._maps = None

    def __del__(self) -> None:
        self.close()

    def _load_all(self) -> sp.csr_matrix:
        lay = self.layout
        try:
            if lay.storage == STORAGE_DENSE:
                return sp.csr_matrix(_numeric(np.asarray(self.node[()])))
            g = self.node
            arrays = (_numeric(g["data"][()]), g["indices"][()], g["indptr"][()])
            cls = sp.csr_matrix if lay.storage == STORAGE_CSR else sp.csc_matrix
            return _checked_sparse(cls, arrays, lay.shape, self.path, g.name).tocsr()
        except (OSError, KeyError) as exc:
            raise _corrupt(self.path, self.node.name, exc) from exc

    def _row_pointer(self) -> np.ndarray:
        if self._indptr is None:
            try:
                indptr = np.asarray(self.node["indptr"][()], dtype=np.int64)
            except OSError as exc:
                raise _corrupt(self.path, self.node.name, exc) from exc
            _check_indptr(indptr, self.layout, self.path, self.node.name)
            self._indptr = indptr
        return self._indptr

    def rows(self, start: int, stop: int) -> sp.csr_matrix:
        """Rows ``start:stop`` as a canonical CSR matrix (sorted indices, no duplicates)."""
        if self._csr is not None:
            out = self._csr[start:stop]
        elif self.layout.storage == STORAGE_DENSE:
            try:
                out = sp.csr_matrix(_numeric(np.asarray(self.node[start:stop])))
            except OSError as exc:
                raise _corrupt(self.path, self.node.name, exc) from exc
        else:
            indptr = self._row_pointer()
            lo, hi = int(indptr[start]), int(indptr[stop])
            try:
                if self._maps is not None:  # plain file regions: no HDF5 library call
                    data, indices = _numeric(self._maps[0][lo:hi]), self._maps[1][lo:hi]
                else:
                    data = _numeric(self.node["data"][lo:hi])
                    indices = self.node["indices"][lo:hi]
            except OSError as exc:
                raise _corrupt(self.path, self.node.name, exc) from exc
            arrays = (data, indices, indptr[start : stop + 1] - lo)
            shape = (stop - start, self.layout.shape[1])
            out = _checked_sparse(sp.csr_matrix, arrays, shape, self.path, self.node.name)
        if not out.has_canonical_format:
            out = out.copy()
            out.sum_duplicates()
        return out

    def row_nnz(self) -> np.ndarray | None:
        """Stored entries per row when known without reading values (sparse), else ``None``."""
        if self._csr is not None:
            return np.diff(self._csr.indptr)
        if self.layout.storage == STORAGE_DENSE:
            return None
        return np.diff(self._row_pointer())

    def iter_rows(
        self, chunk_rows: int, rows: np.ndarray | None = None
    ) -> Iterator[tuple[np.ndarray, sp.csr_matrix]]:
        """Yield ``(row_indices, csr_chunk)`` over all rows (or the sorted ``rows`` given)."""
        n = self.layout.shape[0]
        if rows is None:
            for start in range(0, n, chunk_rows):
                stop = min(n, start + chunk_rows)
                yield np.arange(start, stop), self.rows(start, stop)
            return
        for i in range(0, len(rows), chunk_rows):
            sel = np.asarray(rows[i : i + chunk_rows])
            lo, hi = int(sel[0]), int(sel[-1]) + 1
            block = self.rows(lo, hi) if hi - lo <= 4 * len(sel) + 64 else None
            if block is None:
                block = sp.vstack([self.rows(int(r), int(r) + 1) for r in sel], format="csr")
                yield sel, block
            else:
                yield sel, block[sel - lo]


class _MappedArray:
    """Row ranges of an uncompressed 1-D HDF5 dataset read as plain file regions.

    anndata writes arrays uncompressed but chunked; each chunk is a contiguous byte range of the
    file. Slicing reads the chunks' bytes with ``os.pread`` (page cache, no HDF5 call, any
    thread, GIL released), several times faster than HDF5's chunk cache for row chunks, and
    nothing stays mapped (resident memory is only the arrays returned).
    """

    def __init__(self, fd: int, dtype: np.dtype, offsets: np.ndarray, chunk: int) -> None:
        self.fd, self.dtype, self.offsets, self.chunk = fd, dtype, offsets, chunk

    def __getitem__(self, item: slice) -> np.ndarray:
        lo, hi = item.start, item.stop
        if hi <= lo:
            return np.empty(0, dtype=self.dtype)
        c, size = self.chunk, self.dtype.itemsize
        out = np.empty(hi - lo, dtype=self.dtype)
        view = memoryview(out.view(np.uint8))
        done = 0
        for k in range(lo // c, (hi - 1) // c + 1):
            a, b = max(lo, k * c) - k * c, min(hi, (k + 1) * c) - k * c
            n = (b - a) * size
            got = os.preadv(self.fd, [view[done : done + n]], int(self.offsets[k]) + a * size)
            if got != n:
                raise OSError("unexpected end of file")
            done += n
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _mapped(ds: h5py.Dataset) -> _MappedArray | None:
    """A :class:`_MappedArray` for an unfiltered little-endian 1-D dataset, else None."""
    if ds.ndim != 1 or ds.shape[0] == 0 or ds.dtype.byteorder == ">" or ds.dtype.kind not in "iuf":
        return None
    if ds.compression or ds.shuffle or ds.fletcher32 or ds.scaleoffset is not None:
        return None
    n = ds.shape[0]
    if ds.chunks is None:
        offset = ds.id.get_offset()
        offsets, chunk = (np.array([offset]), n) if offset is not None else (None, 0)
    else:
        chunk = ds.chunks[0]
        n_chunks = -(-n // chunk)
        if ds.id.get_num_chunks() != n_chunks or n_chunks > 1_000_000:
            return None  # unallocated chunks (fill values) or an absurd layout
        offsets = np.full(n_chunks, -1, dtype=np.int64)
        masks: list[int] = []

        def visit(info) -> None:  # noqa: ANN001 - h5py's StoreInfo
            offsets[info.chunk_offset[0] // chunk] = info.byte_offset
            masks.append(info.filter_mask)

        if hasattr(ds.id, "chunk_iter"):  # one pass over the chunk index
            ds.id.chunk_iter(visit)
        elif n_chunks <= 4096:  # get_chunk_info walks the index on every call
            for i in range(n_chunks):
                visit(ds.id.get_chunk_info(i))
        else:
            return None
        if any(masks) or (offsets < 0).any():
            return None
    if offsets is None:
        return None
    if not hasattr(os, "preadv"):  # not on Windows: keep the HDF5 path
        return None
    file_size = os.path.getsize(ds.file.filename)
    if int(offsets.max()) + min(chunk, n) * ds.dtype.itemsize > file_size:
        return None  # truncated file: let h5py report it
    try:
        fd = os.open(ds.file.filename, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError:
        return None
    return _MappedArray(fd, ds.dtype, offsets, chunk)


def _numeric(values: np.ndarray) -> np.ndarray:
    """float16 and bool are not supported by scipy.sparse: widen them to float32."""
    if values.dtype == np.float16 or values.dtype.kind == "b":
        return values.astype(np.float32)
    return values


def _check_dtype(dtype: np.dtype, name: str, path: str) -> None:
    if dtype.kind not in "iufb":
        raise DataError(
            f"'{name}' holds values of type {dtype}, not numbers",
            path=path,
            hint="expression values must be integer or floating-point numbers",
        )


def _check_indptr(indptr: np.ndarray, lay: MatrixLayout, path: str, name: str) -> None:
    n_major = lay.shape[0] if lay.storage == STORAGE_CSR else lay.shape[1]
    ok = (
        indptr.ndim == 1
        and len(indptr) == n_major + 1
        and indptr[0] == 0
        and indptr[-1] == lay.nnz
        and bool(np.all(np.diff(indptr) >= 0))
    )
    if not ok:
        raise InputFileError(
            f"'{name}' has an inconsistent sparse index (indptr)",
            path=path,
            hint="the file is damaged; re-export it from its source",
        )


def _checked_sparse(cls, arrays, shape, path: str, name: str):  # noqa: ANN001, ANN202
    data, indices, indptr = arrays
    indptr = np.asarray(indptr, dtype=np.int64)
    lay = MatrixLayout(
        STORAGE_CSR if cls is sp.csr_matrix else STORAGE_CSC, shape, data.dtype, len(data)
    )
    _check_indptr(indptr, lay, path, name)
    n_minor = shape[1] if cls is sp.csr_matrix else shape[0]
    if len(indices) != len(data) or (
        len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= n_minor)
    ):
        raise InputFileError(
            f"'{name}' has gene/cell indices outside the matrix shape {shape}",
            path=path,
            hint="the file is damaged; re-export it from its source",
        )
    return cls((data, indices, indptr), shape=shape)


def _corrupt(path: str, name: str, exc: Exception) -> InputFileError:
    return InputFileError(
        f"cannot read '{name}' ({exc.__class__.__name__}: {exc}); the file looks truncated or "
        "corrupt",
        path=path,
        hint="copy or download the file again",
    )
