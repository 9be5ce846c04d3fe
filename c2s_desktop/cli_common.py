"""What every ``c2s`` command shares: the app, its consoles, the option groups and their use.

An option group is a dataclass (:class:`DataArgs`, :class:`EngineArgs`) whose fields are
declared once as typer options; :func:`options` splices them into a command's signature and
hands the command one instance. Heavy modules (anndata, the engine) are imported where used,
so ``c2s --help`` starts quickly.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from .core.choices import SOURCE_AUTO, SYMBOLS_AUTO
from .core.context_size import MAX_AUTO_CTX, auto_context
from .core.errors import DataError, OutputError
from .core.progress import ProgressFn

if TYPE_CHECKING:
    from .core.dataset import Dataset
    from .core.engine.base import Engine


app = typer.Typer(
    name="c2s",
    help="Cell2Sentence analysis of single-cell data, offline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

DataArg = Annotated[
    Path,
    typer.Argument(
        help="AnnData .h5ad file, Cell Ranger .h5 or Cell Ranger matrix folder (read-only)."
    ),
]
OutOpt = Annotated[Path, typer.Option("-o", "--output", help="Output file.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
OverwriteOutputOpt = Annotated[
    bool, typer.Option("--overwrite", help="Replace OUTPUT if it exists.")
]
CellsOpt = Annotated[
    str | None, typer.Option("--cells", help="COLUMN=VALUE or a file of cell ids (default: all).")
]
GenesOpt = Annotated[
    int | None, typer.Option("--n-genes", min=1, help="Genes per cell sentence (model default).")
]


# -- option groups -----------------------------------------------------------------------------
@dataclass(frozen=True)
class DataArgs:
    """How a dataset is read: expression source, gene symbols, organism, repeated names."""

    source: Annotated[
        str, typer.Option("--source", help="Expression source: auto, X, raw or layer:NAME.")
    ] = SOURCE_AUTO
    symbols: Annotated[
        str,
        typer.Option(
            "--symbols", help="Gene symbols: auto, var_names, ensembl-map or a var column."
        ),
    ] = SYMBOLS_AUTO
    organism: Annotated[
        str | None, typer.Option("--organism", help="Override: 'Homo sapiens' or 'Mus musculus'.")
    ] = None
    merge_duplicates: Annotated[
        bool,
        typer.Option(
            "--merge-duplicates/--no-merge-duplicates",
            help="Sum genes with identical names into one word (default), or refuse such files.",
        ),
    ] = True


@dataclass(frozen=True)
class EngineArgs:
    """Which model answers: a GGUF file in its own process, or an OpenAI-compatible server."""

    model: Annotated[
        Path | None, typer.Option("--model", "-m", help="GGUF model file (or --server).")
    ] = None
    server: Annotated[
        str | None,
        typer.Option("--server", help="OpenAI-compatible server address (instead of --model)."),
    ] = None
    server_model: Annotated[
        str | None,
        typer.Option("--server-model", help="Model name on the server (default: its only one)."),
    ] = None
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key", help="Server API key (default: $C2S_API_KEY).", show_default=False
        ),
    ] = None
    ca_bundle: Annotated[
        Path | None, typer.Option("--ca-bundle", help="PEM file of the lab's CA (HTTPS servers).")
    ] = None
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=64, help="Server requests in flight at once.")
    ] = 1
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads.")] = None
    ctx: Annotated[
        int,
        typer.Option(
            "--ctx", min=0, help=f"Context size (0 = the model's, at most {MAX_AUTO_CTX})."
        ),
    ] = 0
    gpu_layers: Annotated[
        int, typer.Option("--gpu-layers", help="Layers on the GPU (-1 = all).")
    ] = 0
    adapter: Annotated[
        Path | None,
        typer.Option("--adapter", help="GGUF LoRA adapter for --model (from c2s finetune)."),
    ] = None


DATA_DEFAULTS = DataArgs()
ENGINE_DEFAULTS = EngineArgs()
F = TypeVar("F", bound=Callable[..., Any])
_GROUPS: dict[type, dict[str, Any]] = {}
"""Each option group and the typer annotation of each of its fields."""


def option_group(group: type, flags: dict[str, Any] | None = None) -> None:
    """Make dataclass ``group`` an option group. Its fields declare their typer options in their
    annotations (:class:`DataArgs`), or ``flags`` gives the option of each field of a core
    dataclass, whose own types and defaults stay the one home of those facts."""
    hints = inspect.get_annotations(group, eval_str=True)
    names = [f.name for f in dataclasses.fields(group)]
    if flags is None:
        _GROUPS[group] = {n: hints[n] for n in names}
    else:
        _GROUPS[group] = {n: Annotated[hints[n], flags[n]] for n in names}


option_group(DataArgs)
option_group(EngineArgs)


def options(command: F) -> F:
    """Splice the fields of each option-group parameter (annotated :class:`DataArgs`,
    :class:`EngineArgs` or another :func:`option_group`) into ``command``'s signature, in its
    place; the command gets one instance."""
    signature = inspect.signature(command, eval_str=True)
    params: list[inspect.Parameter] = []
    groups: dict[str, type] = {}

    def is_group(p: inspect.Parameter) -> bool:
        return isinstance(p.annotation, type) and p.annotation in _GROUPS

    taken = {p.name for p in signature.parameters.values() if not is_group(p)}
    for p in signature.parameters.values():
        if not is_group(p):
            params.append(p)
            continue
        group = p.annotation
        groups[p.name] = group
        hints = _GROUPS[group]
        for f in dataclasses.fields(group):
            if f.name in taken:
                raise TypeError(f"{command.__name__}: option {f.name} declared twice")
            taken.add(f.name)
            default = inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
            params.append(
                inspect.Parameter(f.name, p.kind, default=default, annotation=hints[f.name])
            )

    @functools.wraps(command)
    def run(**kwargs: Any) -> Any:
        for name, group in groups.items():
            names = [f.name for f in dataclasses.fields(group)]
            kwargs[name] = group(**{n: kwargs.pop(n) for n in names if n in kwargs})
        return command(**kwargs)

    run.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return run  # type: ignore[return-value]


# -- their use ---------------------------------------------------------------------------------
def open_data(path: Path, args: DataArgs = DATA_DEFAULTS) -> Dataset:
    """Open ``path`` read-only as the options say; warnings go to stderr."""
    from .core.dataset import open_dataset

    ds = open_dataset(
        path,
        source=args.source,
        symbols=args.symbols,
        organism=args.organism,
        merge_duplicates=args.merge_duplicates,
    )
    for w in ds.warnings:
        err.print(f"[yellow]warning:[/] {w}")
    return ds


@contextmanager
def open_engine(args: EngineArgs) -> Iterator[Engine]:
    """The model of ``--model`` in its own process, or the server of ``--server``."""
    from .core.engine.base import EngineOptions

    if (args.model is None) == (args.server is None):
        raise DataError("give --model FILE or --server URL (one of them)")
    if args.adapter is not None and args.server is not None:
        raise DataError(
            "--adapter applies to a local --model, not to a --server",
            hint="load the adapter on the server, or use --model BASE.gguf --adapter FILE",
        )
    engine: Engine
    if args.server is not None:
        from .core.engine.remote import RemoteEngine, ServerOptions

        engine = RemoteEngine(
            ServerOptions(
                url=args.server,
                model=args.server_model,
                api_key=args.api_key,
                ca_bundle=None if args.ca_bundle is None else str(args.ca_bundle),
                n_ctx=args.ctx,
                concurrency=args.concurrency,
            )
        )
    else:
        from .core.engine.process import ProcessEngine
        from .core.models import validate_gguf

        assert args.model is not None
        ctx = auto_context(validate_gguf(args.model).n_ctx_train, args.ctx)
        engine = ProcessEngine(
            args.model,
            EngineOptions(
                n_ctx=ctx,
                threads=args.threads,
                n_gpu_layers=args.gpu_layers,
                adapter=None if args.adapter is None else str(args.adapter),
            ),
        )
    try:
        yield engine
    finally:
        engine.close()


@contextmanager
def progress_bar(label: str) -> Iterator[tuple[ProgressFn, threading.Event]]:
    """A progress bar on stderr (when it is a terminal) and a cancel token."""
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    cancel = threading.Event()
    columns = (
        TextColumn(f"{label}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("", total=1.0)

        def update(fraction: float, message: str) -> None:
            bar.update(task, completed=max(0.0, fraction), description=message)

        yield update, cancel


def check_output(path: Path, overwrite: bool, data: Path | None = None) -> None:
    """Refuse an existing output (unless ``overwrite``) and the input itself."""
    if path.exists() and not overwrite:
        raise OutputError("already exists", path=path, hint="pass --overwrite to replace it")
    if data is not None and path.exists() and data.exists() and path.resolve() == data.resolve():
        raise OutputError("is the input file", path=path, hint="choose another output name")


def column_list(items: list[str] | None) -> list[str]:
    """The obs columns of a repeatable option whose values may also be comma-separated."""
    return [c for item in (items or []) for c in item.split(",") if c]


def warn(warnings: tuple[str, ...] | list[str]) -> None:
    for w in warnings:
        err.print(f"[yellow]warning:[/] {w}", soft_wrap=True)


def finite(value: object) -> object:
    """JSON has no NaN: replace non-finite floats with None, recursively."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value
