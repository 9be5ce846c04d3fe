"""``c2s`` model commands: annotate, summarize, ask, generate, embed, prompt, report.

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
from typing import Annotated

import numpy as np
import typer

from .cli import (
    DataArg,
    MergeOpt,
    OrganismOpt,
    SourceOpt,
    SymbolsOpt,
    _open,
    _progress,
    app,
    err,
    out,
)
from .core import audit
from .core.dataset import SOURCE_AUTO
from .core.engine.base import Engine, EngineOptions
from .core.errors import DataError, OutputError
from .core.export import full_column, provenance, write_annotated_copy, write_table_csv
from .core.genes import SYMBOLS_AUTO
from .core.models import sha256_file
from .core.tasks.common import parse_selector

ModelOpt = Annotated[
    Path | None, typer.Option("--model", "-m", help="GGUF model file (or --server).")
]
ServerOpt = Annotated[
    str | None,
    typer.Option("--server", help="OpenAI-compatible server address (instead of --model)."),
]
ServerModelOpt = Annotated[
    str | None,
    typer.Option("--server-model", help="Model name on the server (default: its only one)."),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option("--api-key", help="Server API key (default: $C2S_API_KEY).", show_default=False),
]
CaBundleOpt = Annotated[
    Path | None, typer.Option("--ca-bundle", help="PEM file of the lab's CA (HTTPS servers).")
]
ConcurrencyOpt = Annotated[
    int, typer.Option("--concurrency", min=1, max=64, help="Server requests in flight at once.")
]
CellsOpt = Annotated[
    str | None, typer.Option("--cells", help="COLUMN=VALUE or a file of cell ids (default: all).")
]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads.")]
CtxOpt = Annotated[
    int,
    typer.Option("--ctx", min=0, help="Context size (0 = the model's, at most 8192)."),
]
GpuOpt = Annotated[int, typer.Option("--gpu-layers", help="Layers on the GPU (-1 = all).")]
GenesOpt = Annotated[
    int | None, typer.Option("--n-genes", min=1, help="Genes per cell sentence (model default).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
OutOpt = Annotated[Path, typer.Option("-o", "--output", help="Output file.")]


@contextmanager
def _engine(
    model: Path | None,
    threads: int | None,
    ctx: int,
    gpu: int,
    server: str | None = None,
    server_model: str | None = None,
    api_key: str | None = None,
    ca_bundle: Path | None = None,
    concurrency: int = 1,
) -> Iterator[Engine]:
    """The model of ``--model`` in its own process, or the server of ``--server``."""
    from .core.engine.process import ProcessEngine
    from .core.engine.remote import RemoteEngine, ServerOptions
    from .core.models import validate_gguf

    if (model is None) == (server is None):
        raise DataError("give --model FILE or --server URL (one of them)")
    if server is not None:
        remote = RemoteEngine(
            ServerOptions(
                url=server,
                model=server_model,
                api_key=api_key,
                ca_bundle=None if ca_bundle is None else str(ca_bundle),
                n_ctx=ctx,
                concurrency=concurrency,
            )
        )
        try:
            yield remote
        finally:
            remote.close()
        return
    assert model is not None
    if ctx == 0:
        ctx = min(validate_gguf(model).n_ctx_train or 2048, 8192)
    engine = ProcessEngine(model, EngineOptions(n_ctx=ctx, threads=threads, n_gpu_layers=gpu))
    try:
        yield engine
    finally:
        engine.close()


def _warn(warnings: tuple[str, ...] | list[str]) -> None:
    for w in warnings:
        err.print(f"[yellow]warning:[/] {w}", soft_wrap=True)


def _check_out(path: Path, overwrite: bool, data: Path | None = None) -> None:
    if path.exists() and not overwrite:
        raise OutputError("already exists", path=path, hint="pass --overwrite to replace it")
    if data is not None and path.exists() and path.resolve() == data.resolve():
        raise OutputError("is the input file", path=path, hint="choose another output name")


def _model_record(model: Path | None, engine: Engine) -> dict[str, str]:
    if model is None:  # a server: its address instead of a file hash
        return {"model_name": f"{engine.info.name} at {engine.info.path}", "model_sha256": ""}
    digest = audit.file_sha256(model) or sha256_file(model)  # cached: the audit log hashes it too
    return {"model_name": engine.info.name or model.name, "model_sha256": digest}


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


def _stream() -> Callable[[str], None]:
    def on_token(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    return on_token


@app.command()
@_audited("annotate")
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
    threads: ThreadsOpt = None,
    ctx: CtxOpt = 0,
    gpu_layers: GpuOpt = 0,
    model: ModelOpt = None,
    server: ServerOpt = None,
    server_model: ServerModelOpt = None,
    api_key: ApiKeyOpt = None,
    ca_bundle: CaBundleOpt = None,
    concurrency: ConcurrencyOpt = 1,
    source: SourceOpt = SOURCE_AUTO,
    symbols: SymbolsOpt = SYMBOLS_AUTO,
    organism: OrganismOpt = None,
    merge_duplicates: MergeOpt = True,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Predict cell types (label log-likelihood), per cell or via representative cells."""
    from .core.tasks.annotate import MODE_PER_CELL, AnnotateOptions, annotate, estimate_text

    if mode not in ("auto", MODE_PER_CELL, "representative"):
        raise DataError(f"unknown --mode '{mode}'", hint="auto, per-cell or representative")
    if candidates is not None and candidates_from is not None:
        raise DataError("give --candidates or --candidates-from, not both")
    _check_out(output, overwrite, data)
    if csv is not None:
        _check_out(csv, overwrite, data)
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
    with _open(data, source, symbols, organism, merge_duplicates) as ds:
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
        with _engine(
            model, threads, ctx, gpu_layers, server, server_model, api_key, ca_bundle, concurrency
        ) as engine:
            if mode == MODE_PER_CELL and n > 2000:
                err.print(
                    f"note: per-cell annotation of {n:,} cells scores every cell with the "
                    "model; at seconds per cell on a laptop this can take hours or days. "
                    "--mode representative is much faster.",
                    soft_wrap=True,
                )
            with _progress("annotate") as (update, cancel):
                result = annotate(ds, engine, opts, progress=update, cancel=cancel)
            _warn(result.warnings)
            if result.cluster_source:
                err.print(f"representative cells per cluster of {result.cluster_source}")
            err.print(
                f"scored {len(result.scored_rows):,} cells "
                f"({result.seconds_per_scored_cell:.2f} s per cell; per-cell mode for all "
                f"{n:,} would take {estimate_text(n, result.seconds_per_scored_cell)})",
                soft_wrap=True,
            )
            record = provenance(
                data,
                "annotate",
                template_id=result.template_id,
                parameters={
                    **_params(opts),
                    "n_genes": result.n_genes,
                    "clusters": result.cluster_source,
                },
                **_model_record(model, engine),
            )
        columns = {
            "c2s_cell_type": full_column(ds.n_cells, result.rows, result.labels, None),
            "c2s_cell_type_prob": full_column(ds.n_cells, result.rows, result.probability, None),
        }
        if result.clusters is not None:
            columns["c2s_cluster"] = full_column(ds.n_cells, result.rows, result.clusters, None)
        write_annotated_copy(
            data, output, obs=columns, uns={"annotate": record}, overwrite=overwrite
        )
        if csv is not None:
            write_table_csv(
                csv,
                {
                    "cell_id": ds.cell_ids[result.rows],
                    "c2s_cell_type": result.labels,
                    "c2s_cell_type_prob": result.probability,
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


def _params(opts: object) -> dict[str, object]:
    values = dataclasses.asdict(opts)  # type: ignore[call-overload]
    values.pop("rows", None)
    return values


@app.command()
@_audited("summarize")
def summarize(
    data: DataArg,
    cells: CellsOpt = None,
    n_cells: Annotated[int, typer.Option("--n-cells", min=1, help="Cells in the prompt.")] = 5,
    n_genes: GenesOpt = None,
    threads: ThreadsOpt = None,
    ctx: CtxOpt = 0,
    gpu_layers: GpuOpt = 0,
    model: ModelOpt = None,
    server: ServerOpt = None,
    server_model: ServerModelOpt = None,
    api_key: ApiKeyOpt = None,
    ca_bundle: CaBundleOpt = None,
    concurrency: ConcurrencyOpt = 1,
    organism: OrganismOpt = None,
    as_json: JsonOpt = False,
    source: SourceOpt = SOURCE_AUTO,
    symbols: SymbolsOpt = SYMBOLS_AUTO,
    merge_duplicates: MergeOpt = True,
) -> None:
    """Describe the selected cells in plain language, next to their top genes."""
    from .core.tasks.summarize import SummarizeOptions, summarize

    with _open(data, source, symbols, organism, merge_duplicates) as ds:
        rows = parse_selector(ds, cells)
        with _engine(
            model, threads, ctx, gpu_layers, server, server_model, api_key, ca_bundle, concurrency
        ) as engine:
            opts = SummarizeOptions(rows=rows, n_cells=n_cells, n_genes=n_genes)
            result = summarize(ds, engine, opts, on_token=None if as_json else _stream())
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "summary": result.text,
                    "template_id": result.template_id,
                    "prompt": result.prompt,
                    "markers": [dataclasses.asdict(m) for m in result.markers],
                    "warnings": list(result.warnings),
                }
            )
        )
        return
    print()
    _warn(result.warnings)
    if result.markers:
        err.print("top genes vs rest: " + ", ".join(m.gene for m in result.markers[:15]))


@app.command()
@_audited("ask")
def ask(
    data: DataArg,
    question: Annotated[str, typer.Argument(help="The question about the selected cells.")],
    cells: CellsOpt = None,
    n_genes: GenesOpt = None,
    threads: ThreadsOpt = None,
    ctx: CtxOpt = 0,
    gpu_layers: GpuOpt = 0,
    model: ModelOpt = None,
    server: ServerOpt = None,
    server_model: ServerModelOpt = None,
    api_key: ApiKeyOpt = None,
    ca_bundle: CaBundleOpt = None,
    concurrency: ConcurrencyOpt = 1,
    organism: OrganismOpt = None,
    as_json: JsonOpt = False,
    source: SourceOpt = SOURCE_AUTO,
    symbols: SymbolsOpt = SYMBOLS_AUTO,
    merge_duplicates: MergeOpt = True,
) -> None:
    """Ask a question about the selected cells (answer streamed)."""
    from .core.tasks.chat import AskOptions, ask

    with _open(data, source, symbols, organism, merge_duplicates) as ds:
        rows = parse_selector(ds, cells)
        with _engine(
            model, threads, ctx, gpu_layers, server, server_model, api_key, ca_bundle, concurrency
        ) as engine:
            result = ask(
                ds,
                engine,
                question,
                AskOptions(rows=rows, n_genes=n_genes),
                on_token=None if as_json else _stream(),
            )
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "question": result.question,
                    "answer": result.answer,
                    "prompt": result.prompt,
                    "warnings": list(result.warnings),
                }
            )
        )
        return
    print()
    _warn(result.warnings)


@app.command()
@_audited("generate")
def generate(
    cell_type: Annotated[str, typer.Option("--cell-type", help="Cell type to generate.")],
    reference: Annotated[
        Path, typer.Option("--reference", help="Dataset for genes and the inverse transform.")
    ],
    output: OutOpt,
    n: Annotated[int, typer.Option("-n", "--n-cells", min=1)] = 10,
    organism: OrganismOpt = None,
    n_genes: GenesOpt = None,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0)] = 1.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    threads: ThreadsOpt = None,
    ctx: CtxOpt = 0,
    gpu_layers: GpuOpt = 0,
    model: ModelOpt = None,
    server: ServerOpt = None,
    server_model: ServerModelOpt = None,
    api_key: ApiKeyOpt = None,
    ca_bundle: CaBundleOpt = None,
    concurrency: ConcurrencyOpt = 1,
    overwrite: OverwriteOpt = False,
    source: SourceOpt = SOURCE_AUTO,
    symbols: SymbolsOpt = SYMBOLS_AUTO,
    merge_duplicates: MergeOpt = True,
) -> None:
    """Generate synthetic cells of a cell type; expression via the inverse transform."""
    from .core.export import write_new_h5ad
    from .core.tasks.generate import GenerateOptions, generate_cells

    _check_out(output, overwrite, reference)
    with _open(reference, source, symbols, organism, merge_duplicates) as ds:
        opts = GenerateOptions(
            cell_type=cell_type,
            n_cells=n,
            organism=ds.organism,
            n_genes=n_genes,
            temperature=temperature,
            seed=seed,
        )
        with (
            _engine(
                model,
                threads,
                ctx,
                gpu_layers,
                server,
                server_model,
                api_key,
                ca_bundle,
                concurrency,
            ) as engine,
            _progress("generate") as (update, cancel),
        ):
            result = generate_cells(ds, engine, opts, progress=update, cancel=cancel)
            record = provenance(
                reference,
                "generate",
                template_id=result.template_id,
                parameters=dataclasses.asdict(opts),
                **_model_record(model, engine),
            )
    result.adata.uns["c2s"] = {"generate": record}
    write_new_h5ad(result.adata, output, overwrite=overwrite)
    _warn(result.warnings)
    err.print(
        f"wrote {n} cells to {output}; {result.valid_fraction:.1%} of generated words are "
        f"genes of the reference; inverse fit R² {result.fit.r_squared:.2f}"
    )


@app.command()
@_audited("embed")
def embed(
    data: DataArg,
    output: OutOpt,
    cells: CellsOpt = None,
    n_genes: GenesOpt = None,
    threads: ThreadsOpt = None,
    ctx: CtxOpt = 0,
    gpu_layers: GpuOpt = 0,
    model: ModelOpt = None,
    server: ServerOpt = None,
    server_model: ServerModelOpt = None,
    api_key: ApiKeyOpt = None,
    ca_bundle: CaBundleOpt = None,
    concurrency: ConcurrencyOpt = 1,
    organism: OrganismOpt = None,
    overwrite: OverwriteOpt = False,
    source: SourceOpt = SOURCE_AUTO,
    symbols: SymbolsOpt = SYMBOLS_AUTO,
    merge_duplicates: MergeOpt = True,
) -> None:
    """C2S embeddings → obsm['X_c2s'] and a 2-D layout obsm['X_c2s_2d'] in a copy of DATA."""
    from .core.tasks.embed import EmbedOptions, embed_cells

    _check_out(output, overwrite, data)
    with _open(data, source, symbols, organism, merge_duplicates) as ds:
        rows = parse_selector(ds, cells)
        with (
            _engine(
                model,
                threads,
                ctx,
                gpu_layers,
                server,
                server_model,
                api_key,
                ca_bundle,
                concurrency,
            ) as engine,
            _progress("embed") as (update, cancel),
        ):
            result = embed_cells(
                ds, engine, EmbedOptions(rows=rows, n_genes=n_genes), progress=update, cancel=cancel
            )
            record = provenance(
                data,
                "embed",
                template_id=result.template_id,
                parameters={"n_genes": n_genes},
                **_model_record(model, engine),
            )
        n_cells = ds.n_cells
    emb = np.full((n_cells, result.embedding.shape[1]), np.nan, dtype=np.float32)
    emb[result.rows] = result.embedding
    lay = np.full((n_cells, 2), np.nan, dtype=np.float32)
    lay[result.rows] = result.layout
    write_annotated_copy(
        data,
        output,
        obsm={"X_c2s": emb, "X_c2s_2d": lay},
        uns={"embed": record},
        overwrite=overwrite,
    )
    _warn(result.warnings)
    err.print(f"wrote {len(result.rows):,} embeddings ({result.embedding.shape[1]}-D) to {output}")


@app.command("prompt")
@_audited("prompt")
def run_prompt(
    data: DataArg,
    template_file: Annotated[Path, typer.Option("--template", help="Template text file.")],
    cells: CellsOpt = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="CSV of answers.")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1)] = 256,
    n_genes: GenesOpt = None,
    threads: ThreadsOpt = None,
    ctx: CtxOpt = 0,
    gpu_layers: GpuOpt = 0,
    model: ModelOpt = None,
    server: ServerOpt = None,
    server_model: ServerModelOpt = None,
    api_key: ApiKeyOpt = None,
    ca_bundle: CaBundleOpt = None,
    concurrency: ConcurrencyOpt = 1,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
    source: SourceOpt = SOURCE_AUTO,
    symbols: SymbolsOpt = SYMBOLS_AUTO,
    merge_duplicates: MergeOpt = True,
    organism: OrganismOpt = None,
    values: Annotated[
        list[str] | None,
        typer.Option("--set", help="Placeholder value KEY=VALUE, e.g. cell_type='B cell'."),
    ] = None,
) -> None:
    """Run your own prompt template (same placeholders as the built-in ones) over cells."""
    from .core.engine.base import GenerateParams
    from .core.prompts import load_custom_template
    from .core.tasks.custom import CustomOptions, run_template

    tmpl = load_custom_template(template_file)
    if output is not None:
        _check_out(output, overwrite, data)
    with _open(data, source, symbols, organism, merge_duplicates) as ds:
        rows = parse_selector(ds, cells)
        opts = CustomOptions(
            template=tmpl, rows=rows, n_genes=n_genes, params=GenerateParams(max_tokens=max_tokens)
        )
        with (
            _engine(
                model,
                threads,
                ctx,
                gpu_layers,
                server,
                server_model,
                api_key,
                ca_bundle,
                concurrency,
            ) as engine,
            _progress("prompt") as (update, cancel),
        ):
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

    _check_out(output, overwrite, results)
    write_report(results, output, overwrite=overwrite)
    err.print(f"wrote {output}")
