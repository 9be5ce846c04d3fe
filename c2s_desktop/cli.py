"""The ``c2s`` command: the same core calls as the app, from a terminal.

Bad input ends with exit code 2 and one line ``error: FILE: problem — what to do``; Ctrl-C
cancels cleanly (exit 130, no partial output); unexpected failures are logged, not shown.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
from pathlib import Path
from typing import Annotated

import typer

from . import __version__
from .cli_common import (
    DATA_DEFAULTS,
    DataArg,
    DataArgs,
    JsonOpt,
    OverwriteOutputOpt,
    app,
    check_output,
    column_list,
    err,
    finite,
    open_data,
    options,
    out,
    progress_bar,
)
from .core import audit
from .core.errors import C2SError, Cancelled

try:
    import click

    _USAGE_ERRORS: tuple[type[Exception], ...] = (typer.TyperException, click.ClickException)
    _ABORTS: tuple[type[BaseException], ...] = (typer.Abort, click.Abort)
except ImportError:  # pragma: no cover - typer without click
    _USAGE_ERRORS, _ABORTS = (typer.TyperException,), (typer.Abort,)

__all__ = ["app", "main"]


@app.command()
@options
def info(
    data: DataArg,
    as_json: JsonOpt = False,
    data_args: DataArgs = DATA_DEFAULTS,
) -> None:
    """Show what the file holds: shape, expression sources, symbols, organism, obs, obsm."""
    import dataclasses

    from rich.table import Table

    from .core.readers import FORMAT_NAMES

    with open_data(data, data_args) as ds:
        facts = ds.info()
    if as_json:
        out.print_json(json.dumps(finite(dataclasses.asdict(facts))))
        return
    out.print(f"[bold]{facts.path}[/]", markup=True, highlight=False)
    out.print(f"  format: {FORMAT_NAMES.get(facts.format, facts.format)}")
    out.print(
        f"  {facts.n_cells:,} cells × {facts.n_genes:,} genes"
        f" ({'backed, read from disk' if facts.backed else 'in memory'})"
    )
    table = Table("source", "storage", "dtype", "genes", "holds", "rankable", box=None)
    for s in facts.sources:
        mark = "[green]yes[/]" if s.rankable else "[red]no[/]"
        chosen = " ←" if s.name == facts.source else ""
        table.add_row(s.name + chosen, s.storage, s.dtype, f"{s.n_genes:,}", s.detail, mark)
    out.print(table)
    out.print(f"  gene symbols: {facts.symbols_source} ({facts.symbols_mapped:,} genes named)")
    if facts.duplicates_merged:
        merged = facts.duplicates_merged
        more = ", ..." if len(merged) > 5 else ""
        out.print(
            f"  repeated gene names merged: {len(merged):,} ({', '.join(merged[:5])}{more})",
            markup=False,
        )
    if facts.non_genes_excluded:
        out.print(f"  not genes, left out of sentences: {facts.non_genes_note}", markup=False)
    out.print(f"  organism: {facts.organism} (from {facts.organism_from})")
    emb = ", ".join(f"{k} ({d}-D)" for k, d in facts.embeddings.items()) or "none"
    out.print(f"  embeddings (obsm): {emb}")
    cols = ", ".join(f"{k} ({n})" for k, n in facts.obs_columns.items()) or "none"
    out.print(f"  categorical obs columns: {cols}")


@app.command()
@options
def sentences(
    data: DataArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="CSV file to write.")],
    top_k: Annotated[
        int | None, typer.Option("--top-k", min=1, help="Keep only the first N genes.")
    ] = None,
    obs: Annotated[
        list[str] | None,
        typer.Option("--obs", help="obs column(s) to add (repeat, or comma-separate)."),
    ] = None,
    overwrite: OverwriteOutputOpt = False,
    threads: Annotated[int | None, typer.Option("--threads", min=1)] = None,
    data_args: DataArgs = DATA_DEFAULTS,
) -> None:
    """Write cell sentences as CSV: cell_id,cell_sentence[,obs columns]."""
    from .core.sentence_csv import write_sentences_csv

    columns = column_list(obs)
    params = {
        "source": data_args.source,
        "symbols": data_args.symbols,
        "top_k": top_k,
        "obs": columns,
    }
    with audit.job("sentences", inputs=[data], params=params) as job:
        check_output(output, overwrite, data)
        with (
            open_data(data, data_args) as ds,
            progress_bar("sentences") as (update, cancel),
        ):
            stats = write_sentences_csv(
                ds,
                output,
                top_k=top_k,
                obs_columns=columns,
                threads=threads,
                progress=update,
                cancel=cancel,
            )
        job.outputs.append(output)
    if stats.n_empty_cells:
        err.print(
            f"[yellow]warning:[/] {stats.n_empty_cells:,} cells have no expressed genes "
            "(empty sentences)"
        )
    err.print(f"wrote {stats.n_cells:,} sentences to {output} ({stats.seconds:.1f} s)")


@app.command()
def version(
    as_json: Annotated[
        bool, typer.Option("--json", help="Also the llama.cpp backend and devices, as JSON.")
    ] = False,
) -> None:
    """Print the version (with --json: the llama.cpp build and the devices it can use)."""
    if not as_json:
        out.print(__version__)
        return
    from .core.engine.backend import backend_info

    info = {"c2s_desktop": __version__, "backend": backend_info().as_dict()}
    out.print_json(json.dumps(info))


@app.command("audit")
def show_audit(
    as_json: Annotated[bool, typer.Option("--json", help="The entries as JSON lines.")] = False,
    last: Annotated[int, typer.Option("-n", "--last", min=1, help="How many entries.")] = 20,
) -> None:
    """Show the audit log: the last jobs, their files (with sha256), model and outcome."""
    entries = audit.read_entries(last)
    if as_json:
        for entry in entries:
            out.print(
                json.dumps(entry, ensure_ascii=False), markup=False, emoji=False, soft_wrap=True
            )
        return
    err.print(f"audit log: {audit.audit_path()}", markup=False, soft_wrap=True)
    if not entries:
        err.print("no jobs recorded yet")
        return
    from rich.table import Table
    from rich.text import Text

    keys = ("time", "task", "status", "input", "model", "outputs", "duration")
    rows = [[audit.summary(entry)[k] for k in keys] for entry in entries]
    if not out.is_terminal:  # piped: whole values, tab-separated
        for row in rows:
            out.print("\t".join(row), markup=False, emoji=False, soft_wrap=True, highlight=False)
        return
    table = Table("time (UTC)", "task", "status", "input", "model", "output", "took", box=None)
    for row in rows:
        table.add_row(*(Text(v) for v in row))
    out.print(table)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``c2s`` console script."""
    multiprocessing.freeze_support()  # the model process is spawned; needed in frozen bundles
    from . import (
        cli_finetune,  # noqa: F401 - registers finetune
        cli_prepare,  # noqa: F401 - registers preprocess and markers
        cli_tasks,  # noqa: F401 - registers the model commands on ``app``
    )

    try:
        code = app(args=argv, standalone_mode=False, prog_name="c2s")
        if isinstance(code, int) and code:  # typer turns Ctrl-C into an exit code (130)
            if code == 130:
                err.print("cancelled")
            sys.exit(code)
    except _ABORTS:
        err.print("cancelled")
        sys.exit(130)
    except _USAGE_ERRORS as exc:
        # typer >= 0.29 vendors click, older versions raise click's own classes.
        code = int(getattr(exc, "exit_code", 2))
        hint = " (see c2s --help)" if code == 2 else ""
        message = exc.format_message()
        if message:  # empty after "no arguments: show help"
            err.print(f"error: {message}{hint}", markup=False, soft_wrap=True)
        sys.exit(code)
    except (KeyboardInterrupt, Cancelled):
        err.print("cancelled")
        sys.exit(130)
    except C2SError as exc:
        err.print(f"error: {exc.one_line()}", markup=False, soft_wrap=True)
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - last resort: log the traceback, show one line
        from .core.logs import log_exception

        where = log_exception(exc, "c2s " + " ".join(argv or sys.argv[1:]))
        err.print(
            f"internal error: {exc.__class__.__name__}: {exc} (details in {where})",
            markup=False,
            soft_wrap=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
