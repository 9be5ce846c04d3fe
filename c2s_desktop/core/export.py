"""Results out: an annotated *copy* of the AnnData, CSV tables, provenance.

The copy is made byte for byte (temp file beside the target), results are written into it with
anndata's element writer (``obs['c2s_…']``, ``obsm['X_c2s']``, ``uns['c2s']``), then it replaces
the target atomically. The input file is only read.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import h5py
import numpy as np
import pandas as pd

from .. import __version__
from .anndata_io import read_elem, write_elem
from .atomic import atomic_path
from .audit import file_sha256
from .csv_table import write_table_csv as write_table_csv  # re-exported
from .errors import DataError, OutputError
from .models import sha256_file
from .readers import is_cellranger, read_anndata

UNS_KEY = "c2s"
"""``uns['c2s'][task]``: one provenance record per task."""


def provenance(
    input_path: str | Path,
    task: str,
    *,
    model_name: str = "",
    model_sha256: str = "",
    template_id: str = "",
    parameters: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The provenance record stored in ``uns['c2s'][task]`` and in reports."""
    return {
        "app": f"c2s-desktop {__version__}",
        "task": task,
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "input": Path(input_path).name,
        "input_sha256": file_sha256(input_path) or sha256_file(input_path),  # cached
        "model": model_name,
        "model_sha256": model_sha256,
        "template_id": template_id,
        "parameters": json.dumps(dict(parameters or {}), default=str, sort_keys=True),
    }


def full_column(n_cells: int, rows: np.ndarray, values: Sequence | np.ndarray, fill: Any) -> Any:
    """A per-cell column (or obsm array): ``values`` at ``rows``, ``fill`` elsewhere (NaN /
    missing label). Numbers give float32 (2-D values give a cells × columns array), text a
    categorical."""
    values = np.asarray(values)
    if values.dtype.kind in "fiu":
        shape = (n_cells, *values.shape[1:])
        out = np.full(shape, np.nan if fill is None else fill, dtype=np.float32)
        out[rows] = values
        return out
    labels = np.full(n_cells, None, dtype=object)
    labels[rows] = values.astype(str)
    return pd.Categorical(labels)


def write_annotated_copy(
    input_path: str | Path,
    output_path: str | Path,
    *,
    obs: Mapping[str, Any] | None = None,
    obsm: Mapping[str, np.ndarray] | None = None,
    uns: Mapping[str, Mapping[str, str]] | None = None,
    overwrite: bool = False,
) -> Path:
    """Copy ``input_path`` to ``output_path`` with results added; atomic, input untouched.

    A Cell Ranger input (``.h5`` or matrix folder) is written as a new ``.h5ad`` of what was
    read (Gene Expression features, as :func:`~.readers.read_tenx` reads them) plus the results.

    ``obs`` columns and ``obsm`` arrays cover every cell (see :func:`full_column`); ``uns``
    records go to ``uns['c2s'][name]``, merged with records already in the file.
    """
    src, target = Path(input_path), Path(output_path)
    if target.exists() and src.exists() and target.resolve() == src.resolve():
        raise OutputError("is the input file", path=target, hint="choose another output name")
    with atomic_path(target, overwrite=overwrite) as tmp:
        ok = False
        if not is_cellranger(src):  # a Cell Ranger input becomes a new .h5ad (below)
            shutil.copyfile(src, tmp)
            with h5py.File(tmp, "r+") as f:
                if isinstance(f.get("obs"), h5py.Group):
                    _add_in_place(f, obs or {}, obsm or {}, uns or {})
                    ok = True
        if not ok:  # Cell Ranger, or anndata < 0.7: write what anndata/scanpy read
            _rewrite(src, tmp, obs or {}, obsm or {}, uns or {})
    return target


def _add_in_place(f: h5py.File, obs, obsm, uns) -> None:  # noqa: ANN001
    group = f["obs"]
    order = [str(c) for c in group.attrs.get("column-order", [])]
    n_cells = _n_obs(f)
    for name, values in obs.items():
        if len(values) != n_cells:
            raise DataError(f"result column {name} has {len(values)} values for {n_cells} cells")
        if name in group:
            del group[name]
        write_elem(group, name, values)
        order = [c for c in order if c != name] + [name]
    group.attrs["column-order"] = np.array(order, dtype=object) if order else np.array([], "S1")
    obsm_group = f.require_group("obsm")
    if "encoding-type" not in obsm_group.attrs:
        obsm_group.attrs["encoding-type"] = "dict"
        obsm_group.attrs["encoding-version"] = "0.1.0"
    for key, array in obsm.items():
        if key in obsm_group:
            del obsm_group[key]
        write_elem(obsm_group, key, np.asarray(array))
    if uns:
        uns_group = f.require_group("uns")
        if "encoding-type" not in uns_group.attrs:
            uns_group.attrs["encoding-type"] = "dict"
            uns_group.attrs["encoding-version"] = "0.1.0"
        existing = read_elem(uns_group[UNS_KEY]) if UNS_KEY in uns_group else {}
        if UNS_KEY in uns_group:
            del uns_group[UNS_KEY]
        write_elem(uns_group, UNS_KEY, {**existing, **{k: dict(v) for k, v in uns.items()}})


def _n_obs(f: h5py.File) -> int:
    group = f["obs"]
    index_name = group.attrs.get("_index", "_index")
    return int(group[index_name].shape[0])


def _rewrite(src: Path, tmp: Path, obs, obsm, uns) -> None:  # noqa: ANN001
    adata = read_anndata(src)
    for name, values in obs.items():
        adata.obs[name] = values
    for key, array in obsm.items():
        adata.obsm[key] = np.asarray(array)
    existing = dict(adata.uns.get(UNS_KEY, {}))
    adata.uns[UNS_KEY] = {**existing, **{k: dict(v) for k, v in uns.items()}}
    adata.write_h5ad(tmp)


def write_new_h5ad(adata: ad.AnnData, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a new AnnData (e.g. generated cells) atomically."""
    target = Path(path)
    with atomic_path(target, overwrite=overwrite) as tmp:
        adata.write_h5ad(tmp)
    return target
