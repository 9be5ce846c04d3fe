"""``c2s preprocess`` (QC → clusters → UMAP → markers, with scanpy) and ``c2s markers``."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from .cli_common import (
    DATA_DEFAULTS,
    DataArg,
    DataArgs,
    OverwriteOutputOpt,
    app,
    check_output,
    column_list,
    err,
    open_data,
    option_group,
    options,
    out,
    progress_bar,
    warn,
)
from .core import audit
from .core.errors import DataError
from .core.preprocess_options import PreprocessOptions

if TYPE_CHECKING:
    from .core.preprocess import PreprocessSummary

option_group(
    PreprocessOptions,
    {
        "min_genes": typer.Option("--min-genes", min=0, help="Keep cells with at least N genes."),
        "max_genes": typer.Option("--max-genes", min=1, help="Keep cells with at most N genes."),
        "max_pct_mt": typer.Option(
            "--max-pct-mt", min=0, max=100, help="Keep cells with at most P % mito."
        ),
        "min_cells": typer.Option(
            "--min-cells", min=0, help="Keep genes expressed in at least N cells."
        ),
        "n_top_genes": typer.Option("--n-top-genes", min=1, help="Highly variable genes."),
        "n_pcs": typer.Option("--n-pcs", min=1, help="Principal components."),
        "n_neighbors": typer.Option("--n-neighbors", min=2, help="Neighbours per cell."),
        "resolution": typer.Option("--resolution", min=0.0, help="Leiden resolution."),
        "seed": typer.Option("--seed", help="Random seed."),
    },
)
_DEFAULTS = PreprocessOptions()


@app.command()
@options
def preprocess(
    data: DataArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="Prepared .h5ad to write.")],
    steps: PreprocessOptions = _DEFAULTS,
    labels: Annotated[
        list[str] | None,
        typer.Option("--labels", help="obs column to compare the clusters with (repeatable)."),
    ] = None,
    overwrite: OverwriteOutputOpt = False,
) -> None:
    """QC, filters, normalisation, HVG, PCA, neighbours, UMAP, Leiden and marker genes."""
    from .core.preprocess import preprocess_file

    columns = column_list(labels)
    params = {**dataclasses.asdict(steps), "labels": columns}
    with audit.job("preprocess", inputs=[data], params=params) as job:
        with progress_bar("preprocess") as (update, cancel):
            summary = preprocess_file(
                data,
                output,
                steps,
                overwrite=overwrite,
                labels=columns,
                progress=update,
                cancel=cancel,
            )
        job.outputs.append(output)
    _print_summary(summary)


def _print_summary(s: PreprocessSummary) -> None:
    from .core.preprocess_options import STAGES

    warn(s.warnings)
    removed = ", ".join(f"{k} {v:,}" for k, v in s.removed.items()) or "none"
    out.print(
        f"cells: {s.n_cells_kept:,} of {s.n_cells_in:,} kept (removed by {removed})",
        soft_wrap=True,
    )
    out.print(
        f"genes: {s.n_genes_kept:,} of {s.n_genes_in:,} kept "
        f"({s.n_genes_in - s.n_genes_kept:,} in fewer cells than --min-cells)"
    )
    out.print(f"clusters (leiden): {s.n_clusters}")
    for column, value in s.ari.items():
        out.print(f"adjusted Rand index vs {column}: {value:.3f}", markup=False)
    stages = [k for k in ("read", *STAGES, "write") if k in s.seconds]
    times = ", ".join(f"{k} {s.seconds[k]:.1f}" for k in stages)
    out.print(f"seconds: {times} (total {s.seconds.get('total', 0.0):.1f})", soft_wrap=True)
    err.print(f"wrote {s.output}", markup=False, soft_wrap=True)


@app.command()
@options
def markers(
    data: DataArg,
    groupby: Annotated[
        str | None, typer.Option("--groupby", help="obs column: each group vs the rest.")
    ] = None,
    cells: Annotated[
        str | None,
        typer.Option("--cells", help="COLUMN=VALUE or a file of cell ids: selection vs rest."),
    ] = None,
    n_genes: Annotated[int, typer.Option("-n", "--n-genes", min=1, help="Genes per group.")] = 10,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="CSV file (default: print a table).")
    ] = None,
    overwrite: OverwriteOutputOpt = False,
    data_args: DataArgs = DATA_DEFAULTS,
) -> None:
    """Marker genes (Wilcoxon, BH-adjusted) per group of a column, or of a selection vs rest."""
    from .core.csv_table import write_table_csv
    from .core.de import rank_markers
    from .core.tasks.common import parse_selector

    if groupby is not None and cells is not None:
        raise DataError("give --groupby or --cells, not both")
    if output is not None:
        check_output(output, overwrite, data)
    params = {"groupby": groupby, "cells": cells is not None, "n_genes": n_genes}
    with audit.job("markers", inputs=[data], params=params) as job:
        with (
            open_data(data, data_args) as ds,
            progress_bar("markers") as (update, cancel),
        ):
            rows = parse_selector(ds, cells)
            table = rank_markers(
                ds, groupby=groupby, rows=rows, n_genes=n_genes, progress=update, cancel=cancel
            )
        if output is not None:
            write_table_csv(
                output, {c: table[c].tolist() for c in table.columns}, overwrite=overwrite
            )
            job.outputs.append(output)
    if output is not None:
        err.print(f"wrote {len(table):,} marker rows to {output}", markup=False, soft_wrap=True)
        return
    cells_text = [[_cell(v) for v in row] for row in table.itertuples(index=False)]
    if not out.is_terminal:  # piped: tab-separated lines
        lines = ["\t".join(table.columns), *("\t".join(row) for row in cells_text)]
        sys.stdout.write("\n".join(lines) + "\n")
        return

    view = Table(*table.columns, box=None)
    for row in cells_text:
        view.add_row(*(Text(v) for v in row))
    out.print(view)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
