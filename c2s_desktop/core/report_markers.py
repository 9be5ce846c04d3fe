"""Marker dot plots of the report: the evidence beside each cluster and each predicted type.

Markers per cluster come from the ``rank_genes_groups`` result scanpy stored in the file when it
was grouped by the cluster column; otherwise, and for the predicted types, they are ranked here
(:func:`de.rank_markers`). The dot plot values come from :func:`de.dot_plot_table`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import de
from .dataset import Dataset
from .progress import CancelToken, ProgressFn, check_cancel, no_progress
from .report_sections import CELL_TYPE, CLUSTER, esc, section
from .report_svg import dot_plot_svg

MARKERS_PER_GROUP = 3
MAX_GROUPS = 40


@dataclass(frozen=True)
class DotPlot:
    """One dot plot: its groups (obs column), the genes and the two tables (groups × genes)."""

    groupby: str
    title: str
    genes: list[str]
    fraction: pd.DataFrame
    mean: pd.DataFrame
    source: str


def stored_markers(rank_genes: Mapping[str, Any], groupby: str) -> pd.DataFrame | None:
    """scanpy's stored ``uns['rank_genes_groups']`` as a marker table (group, rank, gene, ...),
    or None when it was not grouped by ``groupby``."""
    params = rank_genes.get("params") or {}
    names = rank_genes.get("names")
    if not isinstance(params, Mapping) or str(params.get("groupby", "")) != groupby:
        return None
    if names is None or getattr(names, "dtype", None) is None or names.dtype.names is None:
        return None
    frames = []
    for group in names.dtype.names:
        genes = np.asarray(names[group]).astype(str)
        frame = pd.DataFrame({"group": group, "rank": np.arange(len(genes)), "gene": genes})
        for key, col in (("scores", "score"), ("logfoldchanges", "logfoldchange")):
            values = rank_genes.get(key)
            if values is not None and values.dtype.names and group in values.dtype.names:
                frame[col] = np.asarray(values[group], dtype=float)
        if "pvals_adj" in rank_genes and group in (rank_genes["pvals_adj"].dtype.names or ()):
            frame["pval_adj"] = np.asarray(rank_genes["pvals_adj"][group], dtype=float)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else None


def dot_plots(
    dataset: Dataset,
    rank_genes: Mapping[str, Any] | None = None,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> list[DotPlot]:
    """Dot plots per cluster (``leiden``) and per predicted type, for the columns ``dataset.obs``
    holds with 2 to :data:`MAX_GROUPS` groups."""
    plots = []
    todo = [
        (CLUSTER, "Markers per cluster (Leiden)"),
        (CELL_TYPE, "Markers per predicted cell type"),
    ]
    for i, (groupby, title) in enumerate(todo):
        if groupby not in dataset.obs:
            continue
        n_groups = dataset.obs[groupby].nunique(dropna=True)
        if not 2 <= n_groups <= MAX_GROUPS:
            continue
        check_cancel(cancel)
        progress(i / len(todo), f"report: marker genes per {groupby}")
        table = stored_markers(rank_genes or {}, groupby)
        source = "scanpy rank_genes_groups stored in the file (Wilcoxon)"
        if table is None:
            table = de.rank_markers(
                dataset, groupby=groupby, n_genes=MARKERS_PER_GROUP * 4, cancel=cancel
            )
            source = "ranked for this report (Wilcoxon, Benjamini–Hochberg)"
        genes = de.top_markers_per_group(table, MARKERS_PER_GROUP)
        if not genes:
            continue
        fraction, mean = de.dot_plot_table(dataset, groupby, genes)
        plots.append(DotPlot(groupby, title, list(genes), fraction, mean, source))
    progress(1.0, "report: marker genes done")
    return plots


def markers_section(plots: list[DotPlot]) -> str:
    """The dot plots, each with the genes it shows and where they come from."""
    if not plots:
        return ""
    body = "".join(
        f"<h3>{html.escape(p.title)}</h3><p class=meta>Top {MARKERS_PER_GROUP} genes per group "
        f"of obs['{esc(p.groupby)}'], from {esc(p.source)}: "
        f"{esc(', '.join(p.genes))}.</p>{dot_plot_svg(p.fraction, p.mean)}"
        for p in plots
    )
    lead = (
        "The genes that set each group apart: a large dark dot means most cells of the group "
        "express the gene strongly, which is the evidence behind a cluster's or a label's name."
    )
    body += (
        "<p class=meta>Dot area: fraction of the group's cells expressing the gene; colour: "
        "mean log-normalised expression in the group.</p>"
    )
    return section("markers", "Marker genes", lead, body)
