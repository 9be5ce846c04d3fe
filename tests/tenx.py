"""Cell Ranger outputs written the way Cell Ranger writes them, from an AnnData of real counts.

- :func:`write_h5_v3`: ``filtered_feature_bc_matrix.h5`` (v3+): ``matrix/{barcodes, data,
  indices, indptr, shape, features/{_all_tag_keys, feature_type, genome, id, name}}``, a CSC
  matrix of features × barcodes;
- :func:`write_h5_v2`: the v2 layout, one group per genome (``barcodes, data, gene_names, genes,
  indices, indptr, shape``);
- :func:`write_mtx_folder`: ``matrix.mtx[.gz]``, ``features.tsv[.gz]`` (or v2 ``genes.tsv``) and
  ``barcodes.tsv[.gz]``.

Gene IDs are the bundled GENCODE IDs of the symbols where known (else a made-up ``ENSG9…`` ID).
``extra`` adds non-gene features (e.g. Antibody Capture) after the genes.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import scipy.io
import scipy.sparse as sp

from c2s_desktop.core.genes import ensembl_table

from .conftest import REAL_H5AD


def real_counts() -> ad.AnnData:
    """The 700 real PBMCs (int32 counts) of ``tests/data/pbmc_counts_small.h5ad``."""
    return ad.read_h5ad(REAL_H5AD)


def gene_ids(symbols: list[str]) -> list[str]:
    """A unique Ensembl-style ID per symbol (GENCODE's when the symbol is known)."""
    by_symbol: dict[str, str] = {}
    for gid, sym in ensembl_table("human").items():
        by_symbol.setdefault(sym, gid)
    out, seen = [], set()
    for i, s in enumerate(symbols):
        gid = by_symbol.get(s, f"ENSG9{i:010d}")
        if gid in seen:
            gid = f"ENSG9{i:010d}"
        seen.add(gid)
        out.append(gid)
    return out


def _features(
    adata: ad.AnnData, extra: dict[str, int] | None, seed: int = 0
) -> tuple[sp.csr_matrix, list[str], list[str], list[str]]:
    """(cells × features counts, ids, names, types) with ``extra`` non-gene features appended."""
    X = sp.csr_matrix(adata.X).astype(np.int32)
    names = [str(v) for v in adata.var_names]
    ids = gene_ids(names)
    types = ["Gene Expression"] * len(names)
    rng = np.random.default_rng(seed)
    for kind, n in (extra or {}).items():
        block = sp.csr_matrix(rng.poisson(3.0, size=(adata.n_obs, n)).astype(np.int32))
        X = sp.hstack([X, block], format="csr")
        tag = kind.split()[0].upper()
        names += [f"{tag}_{j}" for j in range(n)]
        ids += [f"{tag}-ID{j}" for j in range(n)]
        types += [kind] * n
    X.sort_indices()
    return X, ids, names, types


def _bytes(values: list[str]) -> np.ndarray:
    return np.array([v.encode() for v in values], dtype=f"S{max(map(len, values), default=1)}")


def write_h5_v3(
    path: Path, adata: ad.AnnData | None = None, *, extra: dict[str, int] | None = None
) -> Path:
    """A Cell Ranger v3+ ``filtered_feature_bc_matrix.h5``."""
    adata = real_counts() if adata is None else adata
    X, ids, names, types = _features(adata, extra)
    with h5py.File(path, "w") as f:
        f.attrs["filetype"] = "matrix"
        f.attrs["version"] = 2
        m = f.create_group("matrix")
        m["barcodes"] = _bytes([str(b) for b in adata.obs_names])
        m["data"] = X.data.astype(np.int32)
        m["indices"] = X.indices.astype(np.int64)
        m["indptr"] = X.indptr.astype(np.int64)
        m["shape"] = np.array([X.shape[1], X.shape[0]], dtype=np.int32)
        feats = m.create_group("features")
        feats["_all_tag_keys"] = np.array([b"genome"])
        feats["feature_type"] = _bytes(types)
        feats["genome"] = _bytes(["GRCh38"] * len(ids))
        feats["id"] = _bytes(ids)
        feats["name"] = _bytes(names)
    return path


def write_h5_v2(
    path: Path, adata: ad.AnnData | None = None, *, genomes: tuple[str, ...] = ("GRCh38",)
) -> Path:
    """A Cell Ranger v2 ``.h5``; several genomes split the genes between them."""
    adata = real_counts() if adata is None else adata
    X, ids, names, _ = _features(adata, None)
    parts = np.array_split(np.arange(X.shape[1]), len(genomes))
    with h5py.File(path, "w") as f:
        for genome, cols in zip(genomes, parts, strict=True):
            sub = X[:, cols].tocsr()
            sub.sort_indices()
            g = f.create_group(genome)
            g["barcodes"] = _bytes([str(b) for b in adata.obs_names])
            g["data"] = sub.data.astype(np.int32)
            g["indices"] = sub.indices.astype(np.int64)
            g["indptr"] = sub.indptr.astype(np.int64)
            g["shape"] = np.array([sub.shape[1], sub.shape[0]], dtype=np.int32)
            g["genes"] = _bytes([ids[c] for c in cols])
            g["gene_names"] = _bytes([names[c] for c in cols])
    return path


def write_mtx_folder(
    folder: Path,
    adata: ad.AnnData | None = None,
    *,
    gz: bool = True,
    legacy: bool = False,
    extra: dict[str, int] | None = None,
) -> Path:
    """A Cell Ranger matrix folder (v3 ``features.tsv``, or v2 ``genes.tsv`` with ``legacy``)."""
    adata = real_counts() if adata is None else adata
    X, ids, names, types = _features(adata, extra)
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    scipy.io.mmwrite(buf, X.T.tocoo(), field="integer")
    rows = (
        [f"{i}\t{n}" for i, n in zip(ids, names, strict=True)]
        if legacy
        else [f"{i}\t{n}\t{t}" for i, n, t in zip(ids, names, types, strict=True)]
    )
    files = {
        "matrix.mtx": buf.getvalue(),
        "genes.tsv" if legacy else "features.tsv": ("\n".join(rows) + "\n").encode(),
        "barcodes.tsv": ("\n".join(map(str, adata.obs_names)) + "\n").encode(),
    }
    for name, content in files.items():
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(content, mtime=0))
        else:
            (folder / name).write_bytes(content)
    return folder
