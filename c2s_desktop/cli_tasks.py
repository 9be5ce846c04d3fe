"""``c2s`` model commands: annotate, summarize, ask, generate, embed, prompt, report, bench-types.

Each command opens the data read-only, starts the model in its own process, runs one core task
with a progress bar (Ctrl-C cancels), and writes results atomically with provenance.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .cli_common import (
    DATA_DEFAULTS,
    ENGINE_DEFAULTS,
    CellsOpt,
    DataArg,
    DataArgs,
    EngineArgs,
    GenesOpt,
    JsonOpt,
    OutOpt,
    OverwriteOpt,
    app,
    check_output,
    err,
    open_data,
    open_engine,
    options,
    out,
    progress_bar,
    warn,
)
from .core import audit
from .core.errors import DataError

if TYPE_CHECKING:
    import numpy as np

    from .core.dataset import Dataset
    from .core.engine.base import Engine
    from .core.results import ModelRecord


def _model_record(model: Path | None, engine: Engine) -> ModelRecord:
    from .core.models import sha256_file
    from .core.results import ModelRecord

    if model is None:  # a server: its address instead of a file hash
        return ModelRecord.of_server(engine.info.name, str(engine.info.path))
    digest = audit.file_sha256(model) or sha256_file(model)  # cached: the audit log hashes it too
    adapter = engine.info.adapter
    adapter_digest = (audit.file_sha256(adapter) or sha256_file(adapter)) if adapter else ""
    return ModelRecord(engine.info.name or model.name, digest, adapter, adapter_digest)


_AUDIT_INPUTS = ("data", "reference", "results", "candidates", "template_file")
_AUDIT_OUTPUTS = ("output", "csv")


def _audited(task: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Record each run of a command in the audit log (files, model, options, outcome)."""

    def wrap(command: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(command)
        def run(**kwargs: object) -> None:
            inputs = [kwargs[k] for k in _AUDIT_INPUTS if kwargs.get(k) is not None]
            model = kwargs.get("model")
            server = kwargs.get("server")
            skip = {*_AUDIT_INPUTS, *_AUDIT_OUTPUTS, "model", "server", "api_key"}
            params = {k: v for k, v in kwargs.items() if k not in skip}
            with audit.job(
                task,
                inputs=inputs,  # type: ignore[arg-type]
                model=model if isinstance(model, str | Path) else None,
                engine=str(server) if server else None,
                params=params,
            ) as job:
                command(**kwargs)
                job.outputs.extend(kwargs[k] for k in _AUDIT_OUTPUTS if kwargs.get(k) is not None)  # type: ignore[misc]

        return run

    return wrap


@contextmanager
def _cells_and_model(
    data: Path, cells: str | None, engine_args: EngineArgs, data_args: DataArgs
) -> Iterator[tuple[Dataset, np.ndarray | None, Engine]]:
    """DATA opened read-only, the rows of ``--cells`` (None: all) and the model, for one task."""
    from .core.tasks.common import parse_selector

    with open_data(data, data_args) as ds:
        rows = parse_selector(ds, cells)
        with open_engine(engine_args) as engine:
            yield ds, rows, engine


def _stream(as_json: bool) -> Callable[[str], None] | None:
    """Where an answer's tokens go as they come: stdout, or nowhere under ``--json``."""
    if as_json:
        return None

    def on_token(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    return on_token


def _answered(as_json: bool, payload: dict[str, object], warnings: tuple[str, ...]) -> None:
    """After a streamed answer: under ``--json`` the whole ``payload``, else end its line and
    show the warnings."""
    if as_json:
        out.print_json(json.dumps(payload))
        return
    print()
    warn(warnings)


@app.command()
@_audited("annotate")
@options
def annotate(
    data: DataArg,
    output: OutOpt,
    candidates: Annotated[
        Path | None, typer.Option("--candidates", help="File with one candidate label per line.")
    ] = None,
    candidates_from: Annotated[
        str | None, typer.Option("--candidates-from", help="obs column whose values are labels.")
    ] = None,
    cluster_key: Annotated[
        str | None,
        typer.Option(
            "--cluster-key",
            help="obs column of clusters for representative mode (default: leiden when the "
            "file has it, else k-means; 'k-means' forces k-means).",
        ),
    ] = None,
    per_cluster: Annotated[int, typer.Option("--per-cluster", min=1)] = 5,
    mode: Annotated[str, typer.Option("--mode", help="auto, per-cell or representative.")] = "auto",
    cells: CellsOpt = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="Also write a CSV table.")] = None,
    n_genes: GenesOpt = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
    engine_args: EngineArgs = ENGINE_DEFAULTS,
    data_args: DataArgs = DATA_DEFAULTS,
) -> None:
    """Predict cell types (label log-likelihood), per cell or via representative cells."""
    from .core.csv_table import write_table_csv
    from .core.export import write_annotated_copy
    from .core.results import (
        CELL_TYPE,
        CELL_TYPE_PROB,
        TASK_ANNOTATE,
        annotate_obs,
        annotate_record,
    )
    from .core.tasks.annotate import MODE_PER_CELL, AnnotateOptions, annotate, estimate_text
    from .core.tasks.common import parse_selector

    if mode not in ("auto", MODE_PER_CELL, "representative"):
        raise DataError(f"unknown --mode '{mode}'", hint="auto, per-cell or representative")
    if candidates is not None and candidates_from is not None:
        raise DataError("give --candidates or --candidates-from, not both")
    check_output(output, overwrite, data)
    if csv is not None:
        check_output(csv, overwrite, data)
    labels: tuple[str, ...] = ()
    if candidates is not None:
        try:
            text = candidates.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(
                f"cannot read candidates ({exc})",
                path=candidates,
                hint="give a UTF-8 text file with one label per line",
            ) from exc
        labels = tuple(line.strip() for line in text.splitlines() if line.strip())
        if not labels:
            raise DataError("no labels in the file", path=candidates, hint="one label per line")
    with open_data(data, data_args) as ds:
        rows = parse_selector(ds, cells)
        opts = AnnotateOptions(
            candidates=labels,
            candidates_from=candidates_from,
            mode=mode,
            cluster_key=cluster_key,
            per_cluster=per_cluster,
            n_genes=n_genes,
            rows=rows,
        )
        n = ds.n_cells if rows is None else len(rows)
        with open_engine(engine_args) as engine:
            if mode == MODE_PER_CELL and n > 2000:
                err.print(
                    f"note: per-cell annotation of {n:,} cells scores every cell with the "
                    "model; at seconds per cell on a laptop this can take hours or days. "
                    "--mode representative is much faster.",
                    soft_wrap=True,
                )
            with progress_bar("annotate") as (update, cancel):
                result = annotate(ds, engine, opts, progress=update, cancel=cancel)
            warn(result.warnings)
            if result.cluster_source:
                err.print(f"representative cells per cluster of {result.cluster_source}")
            if result.resumed_cells:
                err.print(
                    f"resumed: {result.resumed_cells:,} of {len(result.scored_rows):,} cells "
                    "were already scored by an interrupted run"
                )
            if result.scoring:
                err.print(f"labels scored by {result.scoring}")
            err.print(
                f"scored {len(result.scored_rows):,} cells "
                f"({result.seconds_per_scored_cell:.2f} s per cell; per-cell mode for all "
                f"{n:,} would take {estimate_text(n, result.seconds_per_scored_cell)})",
                soft_wrap=True,
            )
            record = annotate_record(data, result, _model_record(engine_args.model, engine))
        columns = annotate_obs(result, ds.n_cells)
        write_annotated_copy(
            data, output, obs=columns, uns={TASK_ANNOTATE: record}, overwrite=overwrite
        )
        if csv is not None:
            write_table_csv(
                csv,
                {
                    "cell_id": ds.cell_ids[result.rows],
                    CELL_TYPE: result.labels,
                    CELL_TYPE_PROB: result.probability,
                },
                overwrite=overwrite,
            )
    counts = result.counts()
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "output": str(output),
                    "mode": result.mode,
                    "counts": counts,
                    "candidates": list(result.candidates),
                    "cluster_agreement": result.cluster_agreement,
                }
            )
        )
    else:
        for label, count in counts.items():
            out.print(f"{count:>8,}  {label}", markup=False)
        err.print(f"wrote {output}")


@app.command()
@_audited("summarize")
@options
def summarize(
    data: DataArg,
    cells: CellsOpt = None,
    n_cells: Annotated[int, typer.Option("--n-cells", min=1, help="Cells in the prompt.")] = 5,
    n_genes: GenesOpt = None,
    as_json: JsonOpt = False,
    engine_args: EngineArgs = ENGINE_DEFAULTS,
    data_args: DataArgs = DATA_DEFAULTS,
) -> None:
    """Describe the selected cells in plain language, next to their top genes."""
    from .core.tasks.summarize import SummarizeOptions, summarize

    with _cells_and_model(data, cells, engine_args, data_args) as (ds, rows, engine):
        opts = SummarizeOptions(rows=rows, n_cells=n_cells, n_genes=n_genes)
        result = summarize(ds, engine, opts, on_token=_stream(as_json))
    payload = {
        "summary": result.text,
        "template_id": result.template_id,
        "prompt": result.prompt,
        "markers": [dataclasses.asdict(m) for m in result.markers],
        "warnings": list(result.warnings),
    }
    _answered(as_json, payload, result.warnings)
    if not as_json and result.markers:
        err.print("top genes vs rest: " + ", ".join(m.gene for m in result.markers[:15]))


@app.command()
@_audited("ask")
@options
def ask(
    data: DataArg,
    question: Annotated[str, typer.Argument(help="The question about the selected cells.")],
    cells: CellsOpt = None,
    n_genes: GenesOpt = None,
    as_json: JsonOpt = False,
    engine_args: EngineArgs = ENGINE_DEFAULTS,
    data_args: DataArgs = DATA_DEFAULTS,
) -> None:
    """Ask a question about the selected cells (answer streamed)."""
    from .core.tasks.chat import AskOptions, ask

    with _cells_and_model(data, cells, engine_args, data_args) as (ds, rows, engine):
        opts = AskOptions(rows=rows, n_genes=n_genes)
        result = ask(ds, engine, question, opts, on_token=_stream(as_json))
    payload = {
        "question": result.question,
        "answer": result.answer,
        "prompt": result.prompt,
        "warnings": list(result.warnings),
    }
    _answered(as_json, payload, result.warnings)


@app.command()
@_audited("generate")
@options
def generate(
    cell_type: Annotated[str, typer.Option("--cell-type", help="Cell type to generate.")],
    reference: Annotated[
        Path, typer.Option("--reference", help="Dataset for genes and the inverse transform.")
    ],
    output: OutOpt,
    n: Annotated[int, typer.Option("-n", "--n-cells", min=1)] = 10,
    n_genes: GenesOpt = None,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0)] = 1.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    overwrite: OverwriteOpt = False,
    engine_args: EngineArgs = ENGINE_DEFAULTS,
    data_args: DataArgs = DATA_DEFAULTS,
) -> None:
    """Generate synthetic cells of a cell type; expression via the inverse transform."""
    from .core.export import write_new_h5ad
    from .core.results import TASK_GENERATE, UNS_KEY, generate_record
    from .core.tasks.generate import GenerateOptions, generate_cells

    check_output(output, overwrite, reference)
    with open_data(reference, data_args) as ds:
        opts = GenerateOptions(
            cell_type=cell_type,
            n_cells=n,
            organism=ds.organism,
            n_genes=n_genes,
            temperature=temperature,
            seed=seed,
        )
        with (
            open_engine(engine_args) as engine,
            progress_bar("generate") as (update, cancel),
        ):
            result = generate_cells(ds, engine, opts, progress=update, cancel=cancel)
            record = generate_record(
                reference, result, opts, _model_record(engine_args.model, engine)
            )
    result.adata.uns[UNS_KEY] = {TASK_GENERATE: record}
    write_new_h5ad(result.adata, output, overwrite=overwrite)
    warn(result.warnings)
    err.print(
        f"wrote {n} cells to {output}; {result.valid_fraction:.1%} of generated words are "
        f"genes of the reference; inverse fit R² {result.fit.r_squared:.2f}"
    )


@app.command()
@_audited("embed")
@options
def embed(
    data: DataArg,
    output: OutOpt,
    cells: CellsOpt = None,
    n_genes: GenesOpt = None,
    overwrite: OverwriteOpt = False,
    engine_args: EngineArgs = ENGINE_DEFAULTS,
    data_args: DataArgs = DATA_DEFAULTS,
) -> None:
    """C2S embeddings → obsm['X_c2s'] and a 2-D layout obsm['X_c2s_2d'] in a copy of DATA."""
    from .core.export import write_annotated_copy
    from .core.results import TASK_EMBED, embed_obsm, embed_record
    from .core.tasks.embed import EmbedOptions, embed_cells

    check_output(output, overwrite, data)
    with (
        _cells_and_model(data, cells, engine_args, data_args) as (ds, rows, engine),
        progress_bar("embed") as (update, cancel),
    ):
        opts = EmbedOptions(rows=rows, n_genes=n_genes)
        result = embed_cells(ds, engine, opts, progress=update, cancel=cancel)
        record = embed_record(data, result, _model_record(engine_args.model, engine))
        n_cells = ds.n_cells
    write_annotated_copy(
        data,
        output,
        obsm=embed_obsm(result, n_cells),
        uns={TASK_EMBED: record},
        overwrite=overwrite,
    )
    warn(result.warnings)
    err.print(f"wrote {len(result.rows):,} embeddings ({result.embedding.shape[1]}-D) to {output}")


@app.command("prompt")
@_audited("prompt")
@options
def run_prompt(
    data: DataArg,
    template_file: Annotated[Path, typer.Option("--template", help="Template text file.")],
    cells: CellsOpt = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="CSV of answers.")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1)] = 256,
    n_genes: GenesOpt = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
    values: Annotated[
        list[str] | None,
        typer.Option("--set", help="Placeholder value KEY=VALUE, e.g. cell_type='B cell'."),
    ] = None,
    engine_args: EngineArgs = ENGINE_DEFAULTS,
    data_args: DataArgs = DATA_DEFAULTS,
) -> None:
    """Run your own prompt template (same placeholders as the built-in ones) over cells."""
    from .core.csv_table import write_table_csv
    from .core.engine.base import GenerateParams
    from .core.prompts import load_custom_template
    from .core.tasks.custom import CustomOptions, run_template

    tmpl = load_custom_template(template_file)
    if output is not None:
        check_output(output, overwrite, data)
    params = GenerateParams(max_tokens=max_tokens)
    with (
        _cells_and_model(data, cells, engine_args, data_args) as (ds, rows, engine),
        progress_bar("prompt") as (update, cancel),
    ):
        opts = CustomOptions(template=tmpl, rows=rows, n_genes=n_genes, params=params)
        result = run_template(ds, engine, opts, progress=update, cancel=cancel)
        ids = [";".join(ds.cell_ids[g]) for g in result.rows]
    if output is not None:
        write_table_csv(output, {"cells": ids, "answer": result.answers}, overwrite=overwrite)
    if as_json:
        out.print_json(
            json.dumps(
                [{"cells": c, "answer": a} for c, a in zip(ids, result.answers, strict=True)]
            )
        )
    else:
        for c, a in zip(ids, result.answers, strict=True):
            out.print(f"[bold]{c}[/]: {a}", soft_wrap=True)


@app.command()
@_audited("report")
def report(
    results: Annotated[Path, typer.Argument(help="An .h5ad written by a c2s command.")],
    output: OutOpt,
    overwrite: OverwriteOpt = False,
) -> None:
    """Write a self-contained HTML report of the C2S results in an .h5ad."""
    from .core.report import write_report

    check_output(output, overwrite, results)
    write_report(results, output, overwrite=overwrite)
    err.print(f"wrote {output}")


# -- type recommendation (measured on this machine) ------------------------------------------------
@app.command("bench-types")
def bench_types(
    models: Annotated[
        list[Path],
        typer.Argument(
            help="GGUFs of one model in several types; one file: it and its installed variants."
        ),
    ],
    cells: Annotated[int, typer.Option("--cells", min=1, help="Cells to time.")] = 3,
    labels: Annotated[int, typer.Option("--labels", min=1, help="Candidate labels.")] = 10,
    reps: Annotated[int, typer.Option("--reps", min=1, help="Best of N per cell.")] = 1,
    min_agreement: Annotated[
        float, typer.Option(help="Share of cells whose label must match the most precise type.")
    ] = 1.0,
    threads: Annotated[int | None, typer.Option("--threads", min=1)] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Measure again.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Time per-cell label scoring of each type here and recommend the fastest that agrees."""
    from .core.engine.base import EngineOptions
    from .core.model_store import list_models
    from .core.recommend import recommend_type, variants_of

    paths = list(models)
    if len(paths) == 1:
        paths = variants_of(paths[0], [m.path for m in list_models()])
    with progress_bar("bench-types") as (update, cancel):
        result = recommend_type(
            paths,
            n_cells=cells,
            n_labels=labels,
            reps=reps,
            min_agreement=min_agreement,
            options=EngineOptions(threads=threads),
            use_cache=not no_cache,
            progress=update,
            cancel=cancel,
        )
    if as_json:
        out.print_json(json.dumps(result.to_dict()))
        return
    err.print(
        f"{result.n_cells} cells x {result.n_labels} labels on {result.cpu}"
        + (" (remembered from an earlier measurement)" if result.cached else ""),
        soft_wrap=True,
    )
    for m in result.measurements:
        mark = "*" if m.path == result.choice else " "
        same = round(m.agreement * result.n_cells)
        out.print(
            f"{mark} {m.quant:<8} {m.seconds_per_cell:8.2f} s/cell  labels {same}/{result.n_cells}"
            f"  {m.size_bytes / 1e6:9.1f} MB  {m.path}",
            markup=False,
            soft_wrap=True,
        )
    out.print(f"recommended: {result.summary()}", markup=False, soft_wrap=True)
