"""Marker genes (differential expression) and dot-plot tables, with scanpy.

Values are log-normalised: the ``X`` of a prepared (or otherwise log-normalised) file as it is,
else ``log1p(normalize_total(counts))`` of the file's counts (scanpy's defaults, as in
:mod:`.preprocess`). Markers are scanpy's ``rank_genes_groups`` (Wilcoxon rank-sum,
Benjamini-Hochberg adjusted p-values, fraction of expressing cells in and outside the group).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .dataset import KIND_COUNTS, KIND_LOGNORM, SOURCE_X, Dataset, source_view
from .errors import DataError
from .preprocess import CLUSTER_KEY, read_csr
from .progress import CancelToken, ProgressFn, check_cancel, no_progress

if TYPE_CHECKING:
    import anndata as ad

MARKER_COLUMNS = (
    "group",
    "rank",
    "gene",
    "score",
    "logfoldchange",
    "pval",
    "pval_adj",
    "pct_group",
    "pct_rest",
)
SELECTION, REST = "selection", "rest"
_GROUP_KEY = "_c2s_group"


def _value_source(dataset: Dataset) -> str:
    """Which matrix holds the values: log-normalised X, else counts, else the chosen source."""
    x = dataset.sources.get(SOURCE_X)
    if x is not None and x.kind == KIND_LOGNORM:
        return SOURCE_X
    if dataset.source.kind == KIND_COUNTS:
        return dataset.source.name
    for info in dataset.sources.values():
        if info.kind == KIND_COUNTS:
            return info.name
    return dataset.source.name


def expression_anndata(
    dataset: Dataset,
    *,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> ad.AnnData:
    """Log-normalised values of every named gene (``var_names`` = unique symbols), ``obs``."""
    import anndata as ad
    import scanpy as sc

    with source_view(dataset, _value_source(dataset)) as src:
        x = read_csr(src, progress, cancel, (0.0, 0.6))
        kind = src.source.kind
        symbols = np.asarray(src.symbols.symbols, dtype=object).astype(str)
    check_cancel(cancel)
    obs = dataset.obs.copy()
    obs.index = obs.index.astype(str)
    adata = ad.AnnData(X=x, obs=obs)
    if kind != KIND_LOGNORM:
        x = x.astype(np.float32)
        adata.X = x
        sc.pp.normalize_total(adata)
        sc.pp.log1p(adata)
    named = symbols != ""
    if not named.all():
        adata = adata[:, named].copy()
    adata.var_names = ad.utils.make_index_unique(pd.Index(symbols[named]))
    return adata


def _groups(dataset: Dataset, groupby: str | None, rows: np.ndarray | None) -> pd.Series:
    """The grouping of cells (categorical; NaN = left out)."""
    if rows is not None:
        inside = np.zeros(dataset.n_cells, dtype=bool)
        inside[np.asarray(rows, dtype=np.int64)] = True
        n_in = int(inside.sum())
        if n_in < 2 or dataset.n_cells - n_in < 2:
            raise DataError(
                f"markers need at least 2 selected and 2 other cells ({n_in:,} of "
                f"{dataset.n_cells:,} selected)",
                path=dataset.path,
                hint="select more cells (or fewer)",
            )
        labels = np.where(inside, SELECTION, REST)
        return pd.Series(pd.Categorical(labels, categories=[SELECTION, REST]))
    if groupby is None:
        if CLUSTER_KEY not in dataset.obs.columns:
            raise DataError(
                "no groups given for marker genes",
                path=dataset.path,
                hint=f"give an obs column (--groupby) or a selection; '{CLUSTER_KEY}' clusters "
                "come from preprocessing",
            )
        groupby = CLUSTER_KEY
    dataset.require_obs([groupby])
    col = dataset.obs[groupby]
    if not isinstance(col.dtype, pd.CategoricalDtype):
        col = col.astype("category")
    cats = pd.Index([str(c) for c in col.cat.categories])
    return pd.Series(pd.Categorical.from_codes(col.cat.codes.to_numpy(), categories=cats))


def rank_markers(
    dataset: Dataset,
    *,
    groupby: str | None = None,
    rows: np.ndarray | None = None,
    n_genes: int = 25,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> pd.DataFrame:
    """Top ``n_genes`` markers of each group of ``groupby`` vs the rest (Wilcoxon, BH).

    With ``rows``: the selection (group ``"selection"``) vs every other cell (``"rest"``).
    Columns: :data:`MARKER_COLUMNS`; ``pct_*`` are fractions (0-1) of cells expressing the gene.
    """
    import scanpy as sc

    groups = _groups(dataset, groupby, rows)
    counts = groups.value_counts()
    tested = [str(g) for g in groups.cat.categories if counts.get(g, 0) >= 2]
    if rows is not None:
        tested = [SELECTION]
    elif len(tested) < 2:
        raise DataError(
            f"markers need at least 2 groups of 2 or more cells in '{groupby or CLUSTER_KEY}'",
            path=dataset.path,
            hint="choose a column with several groups",
        )
    adata = expression_anndata(dataset, progress=progress, cancel=cancel)
    adata.obs[_GROUP_KEY] = groups.to_numpy()
    if groups.isna().any():
        adata = adata[groups.notna().to_numpy()].copy()
    check_cancel(cancel)
    progress(0.65, "marker genes (Wilcoxon)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.rank_genes_groups(
            adata,
            _GROUP_KEY,
            groups=tested,
            reference="rest",
            method="wilcoxon",
            corr_method="benjamini-hochberg",
            pts=True,
            n_genes=min(n_genes, adata.n_vars),
            use_raw=False,
            key_added="_c2s_markers",
        )
    check_cancel(cancel)
    df = sc.get.rank_genes_groups_df(adata, group=None, key="_c2s_markers")
    if "group" not in df.columns:
        df.insert(0, "group", tested[0])
    df = df.rename(
        columns={
            "names": "gene",
            "scores": "score",
            "logfoldchanges": "logfoldchange",
            "pvals": "pval",
            "pvals_adj": "pval_adj",
            "pct_nz_group": "pct_group",
            "pct_nz_reference": "pct_rest",
        }
    )
    df["group"] = df["group"].astype(str)
    df["rank"] = df.groupby("group", sort=False).cumcount() + 1
    progress(1.0, "marker genes ready")
    return df[list(MARKER_COLUMNS)].reset_index(drop=True)


def _gene_index(adata: ad.AnnData, genes: list[str], path: object) -> list[str]:
    names = adata.var_names
    upper = {str(n).upper(): str(n) for n in names[::-1]}  # first occurrence wins
    found, missing = [], []
    for g in genes:
        if g in names:
            found.append(g)
        elif g.strip().upper() in upper:
            found.append(upper[g.strip().upper()])
        else:
            missing.append(g)
    if missing:
        raise DataError(
            f"no gene {', '.join(missing[:5])} in the dataset",
            path=str(path),
            hint="give gene symbols present in the file",
        )
    return found


def dot_plot_table(
    dataset: Dataset, groupby: str, genes: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fraction of cells expressing, mean log-normalised expression): groups × genes."""
    groups = _groups(dataset, groupby, None)
    adata = expression_anndata(dataset)
    cols = _gene_index(adata, list(genes), dataset.path)
    x = adata[:, cols].X
    dense = np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)
    fractions, means, index = [], [], []
    for g in groups.cat.categories:
        mask = (groups == g).to_numpy()
        if not mask.any():
            continue
        index.append(str(g))
        fractions.append((dense[mask] > 0).mean(axis=0))
        means.append(dense[mask].mean(axis=0))
    frac = pd.DataFrame(np.array(fractions).reshape(len(index), len(cols)), index=index)
    mean = pd.DataFrame(np.array(means).reshape(len(index), len(cols)), index=index)
    frac.columns = mean.columns = pd.Index(cols)
    frac.index.name = mean.index.name = groupby
    return frac, mean


def top_markers_per_group(table: pd.DataFrame, n: int = 3) -> list[str]:
    """The first ``n`` genes of each group (by rank), each gene once: a dot plot's columns."""
    out: list[str] = []
    ordered = table.sort_values(["rank"], kind="stable") if "rank" in table else table
    for _, part in ordered.groupby("group", sort=False):
        for gene in part["gene"].astype(str).head(n):
            if gene not in out:
                out.append(gene)
    return out
