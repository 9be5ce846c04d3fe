"""From raw counts to an annotated map: QC, filters, normalisation, HVG, PCA, UMAP, Leiden, markers.

Every step is scanpy's own, with the defaults of scanpy's clustering tutorial; this module only
builds the AnnData of counts from a :class:`~.dataset.Dataset`, applies the options, checks the
outcome and writes the prepared copy atomically (:func:`preprocess_file`). The input is never
modified. :func:`run_preprocess_process` runs the same in a child process so that cancel is
immediate (the GUI uses it).

The prepared ``.h5ad``: ``X`` = ``log1p(normalize_total(counts))`` of the genes passing
``min_cells`` (``var_names`` = unique gene symbols, ``layers['counts']`` their counts), ``raw`` =
the counts of the kept cells for all genes with the input's gene table (cell sentences come from
it), ``obs`` = input obs + :data:`QC_COLUMNS` + ``leiden``, scanpy's ``uns`` entries and
``uns['c2s_preprocess']`` (options, thresholds, counts, versions, timings, ARI).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import os
import re
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import __version__
from .atomic import check_writable, remove_quietly
from .child_call import child_process, next_message, rebuilt_error, send_outcome
from .dataset import HUMAN, KIND_COUNTS, MOUSE, Dataset, SourceInfo, open_dataset, source_view
from .errors import C2SError, Cancelled, DataError, InputFileError, OutputError
from .preprocess_options import STAGES as STAGES
from .preprocess_options import PreprocessOptions as PreprocessOptions
from .progress import CancelToken, ProgressFn, check_cancel, no_progress

if TYPE_CHECKING:
    import anndata as ad

PREPROCESS_KEY = "c2s_preprocess"
"""``uns`` key of the record: options, thresholds, counts, versions, timings, ARI."""
CLUSTER_KEY = "leiden"
"""obs column of the clusters (categorical ``"0"``, ``"1"``, ...)."""
QC_COLUMNS = ("n_genes_by_counts", "total_counts", "pct_counts_mt", "pct_counts_ribo")
MITO_PREFIX = {HUMAN: "MT-", MOUSE: "mt-"}
RIBO_PREFIXES = {HUMAN: ("RPS", "RPL"), MOUSE: ("Rps", "Rpl")}
HVG_FLAVOR = "seurat"  # scanpy's tutorial: log-normalised data, default flavor
LABEL_COLUMN_RE = re.compile(r"^(cell_?type(_.*)?|labels?|annotation|bulk_labels)$", re.IGNORECASE)
"""obs columns compared with the Leiden clusters (adjusted Rand index)."""
MIN_CELLS = 10
"""Fewest cells left after the filters that the pipeline accepts."""
_CHUNK_ROWS = 20_000
_POLL_S = 0.05
_WEIGHTS = {
    "read": 0.10,
    "qc": 0.04,
    "filter": 0.04,
    "normalize": 0.04,
    "hvg": 0.04,
    "pca": 0.08,
    "neighbors": 0.16,
    "umap": 0.20,
    "leiden": 0.05,
    "markers": 0.15,
    "write": 0.10,
}


@dataclass(frozen=True)
class QCMetrics:
    """Per-cell quality metrics of the dataset's counts (one value per cell)."""

    n_genes_by_counts: np.ndarray
    total_counts: np.ndarray
    pct_counts_mt: np.ndarray
    pct_counts_ribo: np.ndarray
    mito_prefix: str
    n_mito_genes: int
    source: str


@dataclass(frozen=True)
class PreprocessSummary:
    """What :func:`preprocess_file` did: sizes, clusters, seconds per stage, ARI per label."""

    output: Path
    n_cells_in: int
    n_cells_kept: int
    n_genes_in: int
    n_genes_kept: int
    n_clusters: int
    seconds: dict[str, float]
    ari: dict[str, float]
    removed: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


# -- counts -------------------------------------------------------------------------------------
def counts_source(dataset: Dataset) -> SourceInfo:
    """The chosen source if it holds integer counts, else the first one that does (X, raw, layers).

    Raises :class:`DataError` naming the file when no source holds counts.
    """
    if dataset.source.kind == KIND_COUNTS:
        return dataset.source
    for info in dataset.sources.values():
        if info.kind == KIND_COUNTS:
            return info
    kinds = "; ".join(f"{s.name}: {s.detail}" for s in dataset.sources.values()) or "no matrix"
    raise DataError(
        f"no raw counts for quality control: {kinds}",
        path=dataset.path,
        hint="QC, filtering and clustering start from integer UMI counts (X, raw.X or a counts "
        "layer); open the file the lab's pipeline wrote (e.g. Cell Ranger's "
        "filtered_feature_bc_matrix.h5)",
    )


def _counts_view(dataset: Dataset) -> contextlib.AbstractContextManager[Dataset]:
    """``dataset`` itself when its source holds counts, else the file opened on its counts."""
    return source_view(dataset, counts_source(dataset).name)


def read_csr(
    dataset: Dataset, progress: ProgressFn, cancel: CancelToken | None, span: tuple[float, float]
) -> sp.csr_matrix:
    """The whole matrix of ``dataset``'s source as one CSR, read in row chunks (one copy)."""
    m = dataset.matrix
    n, g = m.shape
    row_nnz = m.row_nnz()
    lo, hi = span
    if row_nnz is None:  # dense storage: sparse chunks stacked
        parts = []
        for idx, chunk in m.iter_rows(_CHUNK_ROWS):
            check_cancel(cancel)
            parts.append(chunk)
            progress(lo + (hi - lo) * (idx[-1] + 1) / n, "reading counts")
        return sp.vstack(parts, format="csr") if parts else sp.csr_matrix((n, g))
    total = int(row_nnz.sum())
    data: np.ndarray | None = None
    indices = np.empty(total, dtype=np.int32 if g < 2**31 else np.int64)
    indptr = np.zeros(n + 1, dtype=np.int64)
    pos = 0
    for idx, chunk in m.iter_rows(_CHUNK_ROWS):
        check_cancel(cancel)
        if data is None:
            data = np.empty(total, dtype=chunk.dtype)
        k = chunk.nnz
        data[pos : pos + k] = chunk.data
        indices[pos : pos + k] = chunk.indices
        indptr[idx[0] + 1 : idx[-1] + 2] = pos + chunk.indptr[1:]
        pos += k
        progress(lo + (hi - lo) * (idx[-1] + 1) / n, "reading counts")
    if data is None:
        data = np.empty(0, dtype=np.float32)
    if pos < total:  # duplicates summed while reading
        data, indices = data[:pos].copy(), indices[:pos].copy()
    if indptr[-1] < 2**31:
        indptr = indptr.astype(np.int32)
    return sp.csr_matrix((data, indices, indptr), shape=(n, g))


def _gene_flags(symbols: np.ndarray, organism: str) -> tuple[str, np.ndarray, np.ndarray]:
    prefix = MITO_PREFIX.get(organism, MITO_PREFIX[HUMAN])
    ribo = RIBO_PREFIXES.get(organism, RIBO_PREFIXES[HUMAN])
    names = pd.Index(symbols.astype(str))
    return prefix, np.asarray(names.str.startswith(prefix)), np.asarray(names.str.startswith(ribo))


def _counts_anndata(
    dataset: Dataset, progress: ProgressFn, cancel: CancelToken | None, span: tuple[float, float]
) -> ad.AnnData:
    """AnnData of the counts (``var`` = the source's gene table, ``var['mt'|'ribo']``)."""
    import anndata as ad

    x = read_csr(dataset, progress, cancel, span)
    obs = dataset.obs.copy()
    obs.index = obs.index.astype(str)
    var = dataset.gene_var.copy()
    var.index = var.index.astype(str)
    adata = ad.AnnData(X=x, obs=obs, var=var)
    symbols = np.asarray(dataset.symbols.symbols, dtype=object).astype(str)
    prefix, mt, ribo = _gene_flags(symbols, dataset.organism)
    adata.var["mt"], adata.var["ribo"] = mt, ribo
    adata.uns["_c2s_symbols"] = symbols  # popped before writing
    adata.uns["_c2s_mito_prefix"] = prefix
    return adata


def _calculate_qc(adata: ad.AnnData) -> None:
    import scanpy as sc

    sc.pp.calculate_qc_metrics(
        adata, qc_vars=["mt", "ribo"], percent_top=None, log1p=False, inplace=True
    )


def qc_metrics(
    dataset: Dataset, progress: ProgressFn = no_progress, cancel: CancelToken | None = None
) -> QCMetrics:
    """Per-cell QC metrics (``sc.pp.calculate_qc_metrics``) from the dataset's counts.

    Raises :class:`DataError` when the file holds no counts.
    """
    with _counts_view(dataset) as counts:
        adata = _counts_anndata(counts, progress, cancel, (0.0, 0.8))
        source = counts.source.name
    check_cancel(cancel)
    progress(0.85, "quality metrics")
    _calculate_qc(adata)
    progress(1.0, "quality metrics ready")
    return _qc_from(adata, source)


def _qc_from(adata: ad.AnnData, source: str) -> QCMetrics:
    obs = adata.obs
    return QCMetrics(
        *(np.asarray(obs[c].to_numpy(), dtype=np.float64) for c in QC_COLUMNS),
        mito_prefix=str(adata.uns["_c2s_mito_prefix"]),
        n_mito_genes=int(np.sum(adata.var["mt"])),
        source=source,
    )


def passing_cells(qc: QCMetrics, options: PreprocessOptions) -> np.ndarray:
    """Cells kept by the filters: min/max genes per cell and max % mitochondrial counts."""
    keep = qc.n_genes_by_counts >= options.min_genes
    if options.max_genes is not None:
        keep &= qc.n_genes_by_counts <= options.max_genes
    if options.max_pct_mt is not None:
        keep &= qc.pct_counts_mt <= options.max_pct_mt
    return keep


def removed_by_filter(qc: QCMetrics, options: PreprocessOptions) -> dict[str, int]:
    """Cells each filter removes, applied in order (min_genes, max_genes, max_pct_mt)."""
    left = np.ones(len(qc.n_genes_by_counts), dtype=bool)
    out: dict[str, int] = {}
    steps = [("min_genes", qc.n_genes_by_counts >= options.min_genes)]
    if options.max_genes is not None:
        steps.append(("max_genes", qc.n_genes_by_counts <= options.max_genes))
    if options.max_pct_mt is not None:
        steps.append(("max_pct_mt", qc.pct_counts_mt <= options.max_pct_mt))
    for name, ok in steps:
        out[name] = int(np.sum(left & ~ok))
        left &= ok
    return out


# -- the pipeline -------------------------------------------------------------------------------
def label_columns(obs: pd.DataFrame, extra: Sequence[str] = ()) -> list[str]:
    """obs columns to compare with the clusters: label-like categorical names + ``extra``."""
    found = []
    for col in obs.columns:
        s = obs[col]
        is_cat = isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(s)
        if is_cat and LABEL_COLUMN_RE.match(str(col)) and str(col) != CLUSTER_KEY:
            found.append(str(col))
    return found + [c for c in extra if c not in found]


def adjusted_rand(labels: pd.Series, clusters: pd.Series) -> float:
    """Adjusted Rand index of two labelings over the cells where ``labels`` is set."""
    from sklearn.metrics import adjusted_rand_score

    ok = labels.notna().to_numpy()
    return float(
        adjusted_rand_score(labels.astype(str).to_numpy()[ok], clusters.astype(str).to_numpy()[ok])
    )


class _Stages:
    """Progress, cancel and seconds per stage."""

    def __init__(self, progress: ProgressFn, cancel: CancelToken | None) -> None:
        self.progress, self.cancel = progress, cancel
        self.seconds: dict[str, float] = {}
        self.done = 0.0

    @contextlib.contextmanager
    def stage(self, name: str, message: str) -> Iterator[None]:
        check_cancel(self.cancel)
        self.progress(self.done, message)
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 3)
        self.done += _WEIGHTS[name]
        self.progress(min(self.done, 1.0), message)
        check_cancel(self.cancel)

    def span(self, name: str) -> tuple[float, float]:
        return self.done, self.done + _WEIGHTS[name]


def prepare(
    dataset: Dataset,
    options: PreprocessOptions,
    *,
    labels: Sequence[str] = (),
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> tuple[ad.AnnData, PreprocessSummary]:
    """Run the whole pipeline on ``dataset``'s counts; returns the prepared AnnData (not written).

    ``labels``: obs columns compared with the clusters besides the label-like ones.
    """
    import anndata as ad
    import scanpy as sc

    from . import jit_cache

    jit_cache.enable()  # umap-learn's compiled code is kept for the next run (~10 s a run)
    dataset.require_obs(labels, "to compare the clusters with")
    st = _Stages(progress, cancel)
    notes: list[str] = []
    with _counts_view(dataset) as counts, st.stage("read", "reading counts"):
        adata = _counts_anndata(counts, progress, cancel, st.span("read"))
        source = counts.source.name
        gene_table = adata.var.drop(columns=["mt", "ribo"])
        embeddings = {k: counts.embedding(k) for k in counts.embedding_names()}
    n_cells_in, n_genes_in = adata.shape
    with st.stage("qc", "quality metrics"):
        _calculate_qc(adata)
        qc = _qc_from(adata, source)
    with st.stage("filter", "filtering cells and genes"):
        keep = passing_cells(qc, options)
        removed = removed_by_filter(qc, options)
        if not keep.any():
            what = ", ".join(f"{k} removed {v:,}" for k, v in removed.items() if v)
            raise DataError(
                f"the filters remove every cell ({what} of {n_cells_in:,})",
                path=dataset.path,
                hint="lower --min-genes or raise --max-genes / --max-pct-mt",
            )
        symbols = adata.uns.pop("_c2s_symbols")
        prefix = str(adata.uns.pop("_c2s_mito_prefix"))
        for key, array in embeddings.items():
            adata.obsm[key] = array
        if int(keep.sum()) < MIN_CELLS:
            raise DataError(
                f"only {int(keep.sum()):,} of {n_cells_in:,} cells pass the filters; clustering "
                f"needs at least {MIN_CELLS}",
                path=dataset.path,
                hint="lower --min-genes or raise --max-genes / --max-pct-mt",
            )
        if not keep.all():
            adata = adata[keep].copy()
        genes, n_cells = sc.pp.filter_genes(adata, min_cells=options.min_cells, inplace=False)
        if not genes.any():
            raise DataError(
                f"no gene is expressed in at least {options.min_cells:,} of the "
                f"{adata.n_obs:,} cells kept",
                path=dataset.path,
                hint="lower --min-cells",
            )
        raw = ad.AnnData(X=adata.X, obs=pd.DataFrame(index=adata.obs_names), var=gene_table)
        adata = adata[:, genes].copy()
        adata.var["n_cells"] = n_cells[genes]
        adata.raw = raw  # the counts of every gene, the input's gene table (no copy)
        del raw
        named = np.where(symbols[genes] != "", symbols[genes], adata.var_names.to_numpy())
        adata.var_names = _unique(named)
    with st.stage("normalize", "normalising (normalize_total, log1p)"):
        adata.layers["counts"] = adata.X.copy()
        sc.pp.normalize_total(adata)
        sc.pp.log1p(adata)
    with st.stage("hvg", "highly variable genes"):
        if options.n_top_genes >= adata.n_vars:
            notes.append(f"n_top_genes {options.n_top_genes:,} ≥ {adata.n_vars:,} genes: all kept")
        sc.pp.highly_variable_genes(adata, n_top_genes=options.n_top_genes, flavor=HVG_FLAVOR)
        n_hvg = int(adata.var["highly_variable"].sum())
    n_pcs = max(1, min(options.n_pcs, adata.n_obs - 1, n_hvg - 1))
    if n_pcs < options.n_pcs:
        notes.append(f"n_pcs capped to {n_pcs} (cells and highly variable genes allow no more)")
    n_neighbors = max(2, min(options.n_neighbors, adata.n_obs - 1))
    with st.stage("pca", f"PCA ({n_pcs} components)"):
        sc.tl.pca(adata, n_comps=n_pcs, random_state=options.seed)
    with st.stage("neighbors", "neighbour graph"):
        sc.pp.neighbors(adata, n_neighbors=n_neighbors, n_pcs=n_pcs, random_state=options.seed)
    with st.stage("umap", "UMAP"):
        sc.tl.umap(adata, random_state=options.seed)
    with st.stage("leiden", "Leiden clustering"):
        sc.tl.leiden(
            adata,
            resolution=options.resolution,
            random_state=options.seed,
            flavor="igraph",
            n_iterations=2,
            directed=False,
            key_added=CLUSTER_KEY,
        )
        n_clusters = int(adata.obs[CLUSTER_KEY].nunique())
    with st.stage("markers", "marker genes (Wilcoxon)"):
        if n_clusters >= 2:
            sc.tl.rank_genes_groups(adata, CLUSTER_KEY, method="wilcoxon", pts=True, use_raw=False)
        else:
            notes.append("one cluster only: no marker genes")
    ari = {
        col: round(adjusted_rand(adata.obs[col], adata.obs[CLUSTER_KEY]), 6)
        for col in label_columns(dataset.obs, labels)
        if col in adata.obs.columns
    }
    summary = PreprocessSummary(
        output=Path(),
        n_cells_in=n_cells_in,
        n_cells_kept=int(adata.n_obs),
        n_genes_in=n_genes_in,
        n_genes_kept=int(adata.n_vars),
        n_clusters=n_clusters,
        seconds=dict(st.seconds),
        ari=ari,
        removed=removed,
        warnings=notes,
    )
    record: dict[str, Any] = {
        "app": f"c2s-desktop {__version__}",
        "options": {k: v for k, v in asdict(options).items() if v is not None},
        "counts_source": "raw",
        "input_counts_source": source,
        "organism": dataset.organism,
        "mito_prefix": prefix,
        "n_mito_genes": qc.n_mito_genes,
        "hvg_flavor": HVG_FLAVOR,
        "n_pcs_used": n_pcs,
        "n_neighbors_used": n_neighbors,
        "n_cells_in": n_cells_in,
        "n_cells_kept": summary.n_cells_kept,
        "n_genes_in": n_genes_in,
        "n_genes_kept": summary.n_genes_kept,
        "n_clusters": n_clusters,
        "cells_removed": removed,
        "genes_removed": {"min_cells": int(n_genes_in - adata.n_vars)},
        "notes": list(notes),
        "versions": _versions(),
        "ari": ari,
    }
    if labels:
        record["labels"] = list(labels)
    adata.uns[PREPROCESS_KEY] = record
    if dataset.organism_from != "default":  # found in the input: keep it findable
        adata.uns["organism"] = dataset.organism
    return adata, summary


def _unique(names: np.ndarray) -> pd.Index:
    import anndata as ad

    return ad.utils.make_index_unique(pd.Index(np.asarray(names, dtype=object).astype(str)))


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"c2s_desktop": __version__}
    for name in ("scanpy", "anndata", "numpy", "scipy", "scikit-learn", "igraph", "umap-learn"):
        with contextlib.suppress(PackageNotFoundError):
            out[name.replace("-", "_")] = version(name)
    return out


def input_sha256(path: Path) -> str:
    """sha256 of the input file; for a folder, of its files' names and contents in order."""
    from .audit import file_sha256
    from .models import sha256_file

    if path.is_file():
        return file_sha256(path) or sha256_file(path)
    digest = hashlib.sha256()
    for f in sorted(p for p in path.iterdir() if p.is_file()):
        digest.update(f.name.encode() + b"\0" + sha256_file(f).encode())
    return digest.hexdigest()


def _check_target(input: Path, output: Path, overwrite: bool) -> Path:
    if output.exists() and input.exists() and output.resolve() == input.resolve():
        raise OutputError("is the input file", path=output, hint="choose another output name")
    if output.exists() and not overwrite:
        raise OutputError("already exists", path=output, hint="pass --overwrite to replace it")
    return check_writable(output, overwrite=overwrite)


def preprocess_file(
    input: str | Path,
    output: str | Path,
    options: PreprocessOptions | None = None,
    *,
    overwrite: bool = False,
    labels: Sequence[str] = (),
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
    _tmp: str | None = None,
) -> PreprocessSummary:
    """Preprocess ``input`` (h5ad or Cell Ranger output) into a new prepared ``output`` .h5ad.

    Atomic: nothing is written when it fails or is cancelled; an existing ``output`` is only
    replaced with ``overwrite=True``, and never the input itself.
    """
    options = options or PreprocessOptions()
    src, target = Path(input), Path(output)
    target = _check_target(src, target, overwrite)
    start = time.perf_counter()
    with open_dataset(src, merge_duplicates=True, memory_threshold=0, cancel=cancel) as ds:
        adata, summary = prepare(ds, options, labels=labels, progress=progress, cancel=cancel)
        read_notes = list(ds.warnings)
    record = adata.uns[PREPROCESS_KEY]
    record["input"] = src.name
    record["input_sha256"] = input_sha256(src)
    record["time"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    check_cancel(cancel)
    progress(1.0 - _WEIGHTS["write"], f"writing {target.name}")
    t0 = time.perf_counter()
    record["seconds"] = dict(summary.seconds)
    seconds = dict(summary.seconds)
    _write_atomic(adata, target, overwrite, _tmp)
    seconds["write"] = round(time.perf_counter() - t0, 3)
    seconds["total"] = round(time.perf_counter() - start, 3)
    progress(1.0, f"wrote {target.name}")
    notes = read_notes + summary.warnings
    return PreprocessSummary(
        **{**asdict(summary), "output": target, "seconds": seconds, "warnings": notes}
    )


def _write_atomic(adata: ad.AnnData, target: Path, overwrite: bool, tmp: str | None) -> None:
    check_writable(target, overwrite=overwrite)
    if tmp is None:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # anndata's notes on string columns
            adata.write_h5ad(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        remove_quietly(tmp)
        raise OutputError(
            f"writing failed ({exc})", path=target, hint="check free disk space and permissions"
        ) from exc
    except BaseException:
        remove_quietly(tmp)
        raise


# -- in a child process -------------------------------------------------------------------------
_ERRORS = (C2SError, InputFileError, DataError, OutputError)
"""The errors that come back from the child as themselves (others as C2SError)."""


class PreprocessFailed(RuntimeError):
    """An unexpected failure inside the preprocessing process (details in its log)."""


def _child(
    conn: Any, input: str, output: str, options: PreprocessOptions, overwrite: bool,
    labels: list[str], tmp: str,
) -> None:  # fmt: skip
    """Child-process entry: run :func:`preprocess_file`, relay progress, send the outcome."""
    warnings.simplefilter("ignore")

    def relay(fraction: float, message: str) -> None:
        conn.send(("progress", (fraction, message)))

    def run() -> PreprocessSummary:
        return preprocess_file(
            input, output, options, overwrite=overwrite, labels=labels, progress=relay, _tmp=tmp
        )

    try:
        send_outcome(conn, run, f"preprocessing {input}")
    finally:
        remove_quietly(tmp)


def run_preprocess_process(
    input: str | Path,
    output: str | Path,
    options: PreprocessOptions | None = None,
    *,
    overwrite: bool = False,
    labels: Sequence[str] = (),
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> PreprocessSummary:
    """:func:`preprocess_file` in a spawned child process; progress is relayed to ``progress``.

    Errors come back as the same :class:`C2SError` type and message; ``cancel`` stops the child
    within a second (it is terminated) and leaves no file behind (:class:`Cancelled` is raised).
    """
    options = options or PreprocessOptions()
    src, target = Path(input), Path(output)
    target = _check_target(src, target, overwrite)
    check_cancel(cancel)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as exc:
        raise OutputError(f"cannot create a file here ({exc.strerror})", path=target) from exc
    os.close(fd)
    args = (str(src), str(target), options, overwrite, list(labels), tmp)
    try:
        with child_process(_child, args, name="c2s-preprocess", grace_s=1.0) as (proc, conn):
            return _relay(proc, conn, progress, cancel, target)
    finally:
        remove_quietly(tmp)


def _relay(
    proc: Any, conn: Any, progress: ProgressFn, cancel: CancelToken | None, target: Path
) -> PreprocessSummary:
    while True:
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        message = next_message(proc, conn, _POLL_S, lambda: _ended(proc, target))
        if message is None:
            continue
        kind, payload = message
        if kind == "progress":
            progress(*payload)
        elif kind == "result":
            return payload
        elif kind == "error":
            raise rebuilt_error(payload, _ERRORS)
        else:
            raise PreprocessFailed(str(payload))


def _ended(proc: Any, target: Path) -> DataError:
    proc.join(timeout=1.0)
    return DataError(
        f"the preprocessing process ended unexpectedly (exit code {proc.exitcode})",
        path=target,
        hint="the computer may have run out of memory; try a smaller file or close other programs",
    )
