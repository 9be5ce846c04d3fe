"""``c2s-quantize`` command line: convert/quantize, ``verify`` and ``info``.

    c2s-quantize SOURCE -o OUT.gguf --type q8_0 [--verify]
    c2s-quantize verify ORIGINAL GGUF [GGUF ...]
    c2s-quantize info GGUF
    c2s-quantize export-hf MODEL.gguf OUT_DIR

User errors print ``error: <file>: <problem> — <hint>`` on one line and exit with status 2;
a failed verification exits with status 1.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from .errors import QuantizeError
from .progress import ProgressFn
from .provenance import SourceInfo, read_provenance
from .qtypes import QUANT_TYPES, recommendation
from .verify import VerifyReport, gguf_type_name, types_markdown, verify_ggufs

QType = Enum("QType", {n: n for n in QUANT_TYPES}, type=str)  # type: ignore[misc]
_DEFAULT_TYPE = QType("q8_0")


class Reference(StrEnum):
    auto = "auto"
    transformers = "transformers"
    gguf = "gguf"


_USE_TRANSFORMERS = {Reference.auto: None, Reference.transformers: True, Reference.gguf: False}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

convert_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
verify_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
info_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
export_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@convert_app.command(
    help="Convert a C2S checkpoint (folder or hub repo id) to a GGUF file.",
    epilog="Also: c2s-quantize verify ORIGINAL GGUF | c2s-quantize info GGUF | "
    "c2s-quantize export-hf GGUF OUT_DIR (each has --help).",
)
def convert(
    source: Annotated[str, typer.Argument(help="Checkpoint folder, or hub repo id to download.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .gguf file.")],
    type_: Annotated[
        QType, typer.Option("--type", "-t", help=f"Output type; {recommendation()}.")
    ] = _DEFAULT_TYPE,
    verify: Annotated[bool, typer.Option(help="Compare the result with the original.")] = False,
    allow_pickle: Annotated[
        bool, typer.Option(help="Also read pickle weights (can run code; needs torch).")
    ] = False,
    revision: Annotated[str | None, typer.Option(help="Hub revision (branch/commit).")] = None,
    repo_id: Annotated[
        str | None, typer.Option(help="Hub repo id a local folder was downloaded from.")
    ] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Hugging Face cache folder.")] = None,
    threads: Annotated[int, typer.Option(help="llama.cpp threads (0 = default).")] = 0,
    hash_sources: Annotated[
        bool, typer.Option(help="Record SHA-256 of the source files in the GGUF.")
    ] = True,
    report: Annotated[
        Path | None, typer.Option(help="Report path prefix (default: OUTPUT.verify).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask to confirm.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show llama.cpp logs.")] = False,
) -> None:
    from .pipeline import quantize_checkpoint

    _setup_logging(verbose)
    with _guard() as cancel:
        folder, info = _resolve_source(
            source, revision, repo_id, cache_dir, allow_pickle, yes, cancel
        )
        with _progress() as progress:
            result = quantize_checkpoint(
                folder,
                output,
                type_.value,
                source=info,
                allow_pickle=allow_pickle,
                verify=verify,
                hash_sources=hash_sources,
                threads=threads,
                progress=progress,
                cancel=cancel,
            )
        out.print(
            f"wrote {result.output} ({result.quant_type}, {result.size_bytes / 1e6:.1f} MB) "
            f"in {result.seconds:.1f} s"
        )
        if result.note:
            out.print(result.note)
        if result.verification is not None:
            _finish_report(result.verification, report or _default_prefix(output))


@verify_app.command(
    help="Compare GGUFs (e.g. one per type) with their original (checkpoint folder or GGUF)."
)
def verify(
    original: Annotated[Path, typer.Argument(help="Checkpoint folder or reference GGUF.")],
    ggufs: Annotated[list[Path], typer.Argument(help="GGUF file(s) to check.")],
    report: Annotated[
        Path | None, typer.Option(help="Report path prefix (default: GGUF.verify).")
    ] = None,
    reference: Annotated[
        Reference, typer.Option(help="For a folder: transformers, or a lossless GGUF of it.")
    ] = Reference.auto,
    min_top1: Annotated[float, typer.Option(help="Minimum top-1 agreement to pass.")] = 0.9,
    threads: Annotated[int, typer.Option(help="llama.cpp threads (0 = default).")] = 0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show llama.cpp logs.")] = False,
) -> None:
    _setup_logging(verbose)
    with _guard() as cancel:
        if report is not None and len(ggufs) > 1:
            raise QuantizeError(
                "--report names one report but several GGUFs were given",
                "leave --report out: each GGUF's report goes beside it (GGUF.verify.md)",
            )
        with _progress() as progress:
            results = verify_ggufs(
                original,
                ggufs,
                use_transformers=_USE_TRANSFORMERS[reference],
                min_top1=min_top1,
                threads=threads,
                progress=progress,
                cancel=cancel,
            )
    passed = [_write_report(r, report or _default_prefix(Path(r.candidate))) for r in results]
    if len(results) > 1:
        out.print("\n" + types_markdown(results), markup=False)
    if not all(passed):
        raise typer.Exit(1)


@info_app.command(help="Show a GGUF's type and c2s provenance metadata.")
def info(gguf: Annotated[Path, typer.Argument(help="GGUF file.")]) -> None:
    with _guard():
        if not gguf.is_file():
            raise QuantizeError("no such GGUF file", "check the path", gguf)
        out.print(f"type: {gguf_type_name(gguf)}", markup=False)
        for key, value in vars(read_provenance(gguf)).items():
            items = value if isinstance(value, tuple) else (value,)
            out.print(f"c2s.{key}: " + "\n    ".join(map(str, items)), markup=False)


@export_app.command(help="Export a GGUF model as a Hugging Face folder (to fine-tune it).")
def export_hf(
    gguf: Annotated[Path, typer.Argument(help="GGUF model file.")],
    output: Annotated[Path, typer.Argument(help="New output folder.")],
) -> None:
    from .export_hf import export_hf as export

    with _guard() as cancel, _progress() as progress:
        result = export(gguf, output, progress=progress, cancel=cancel)
    out.print(
        f"wrote {result.folder} ({result.architecture}, {result.n_tensors} tensors, "
        f"{result.bytes_written / 1e6:.1f} MB F32) in {result.seconds:.1f} s",
        markup=False,
    )


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (dispatches ``verify`` / ``info`` subcommands)."""
    args = sys.argv[1:] if argv is None else argv
    apps: dict[str, typer.Typer] = {
        "verify": verify_app,
        "info": info_app,
        "export-hf": export_app,
    }
    if args and args[0] in apps:
        apps[args[0]](args=args[1:], prog_name=f"c2s-quantize {args[0]}")
    else:
        convert_app(args=args, prog_name="c2s-quantize")


def _resolve_source(
    source: str,
    revision: str | None,
    repo_id: str | None,
    cache_dir: Path | None,
    allow_pickle: bool,
    yes: bool,
    cancel: threading.Event,
) -> tuple[Path, SourceInfo]:
    """A local folder as is; a hub repo id is described (licence shown) and downloaded."""
    local = Path(source).expanduser()
    if local.exists() or not _REPO_ID.match(source):
        return local, SourceInfo.for_folder(local, repo_id or "", revision or "")
    from . import hub

    remote = hub.describe(source, revision=revision, allow_pickle=allow_pickle, cache_dir=cache_dir)
    err.print(
        Panel(
            f"[bold]{escape(remote.repo_id)}[/] @ {remote.revision[:12]} ({remote.architecture})\n"
            f"licence: [bold]{escape(remote.license)}[/]\n{escape(remote.license_note)}\n"
            f"download: {len(remote.files)} files, {remote.total_bytes / 1e9:.2f} GB\n"
            "The GGUF you make is for your own use under this licence; "
            "C2S Desktop never redistributes converted weights.",
            title="model licence",
        )
    )
    if not yes and sys.stdin.isatty() and not typer.confirm("Download and convert?", default=True):
        raise typer.Exit(1)
    with _progress() as progress:
        folder = hub.download(remote, cache_dir=cache_dir, progress=progress, cancel=cancel)
    return folder, SourceInfo(remote.repo_id, remote.revision)


def _finish_report(result: VerifyReport, prefix: Path) -> None:
    if not _write_report(result, prefix):
        raise typer.Exit(1)


def _write_report(result: VerifyReport, prefix: Path) -> bool:
    """Write the report, print its summary line; whether it passed."""
    md, js = result.write(prefix)
    same = sum(a for a, _ in result.label_agreement_by_label.values())
    out.print(
        f"{Path(result.candidate).name} ({result.candidate_type}): "
        f"verification {'PASSED' if result.passed else 'FAILED'}: "
        f"identical token ids: {'yes' if result.tokenization_identical else 'NO'}, "
        f"max |Δ logit| {result.max_abs_logit_diff:.4f} (scale {result.logit_scale:.1f}), "
        f"top-1 agreement {result.top1_agreement:.2%}, "
        f"label agreement {result.label_agreement:.0%} ({same}/{len(result.labelled)} probes)",
        markup=False,
    )
    out.print(f"report: {md} {js}", markup=False)
    return result.passed


def _default_prefix(path: Path) -> Path:
    return path.with_name(path.name + ".verify")


@contextmanager
def _guard() -> Iterator[threading.Event]:
    """Turn QuantizeError into one line + exit 2, Ctrl-C into a clean exit 130."""
    cancel = threading.Event()
    try:
        yield cancel
    except QuantizeError as exc:
        err.print(f"error: {exc.one_line()}", soft_wrap=True, markup=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        cancel.set()
        err.print("error: interrupted — no partial output was left behind", markup=False)
        raise typer.Exit(130) from None


@contextmanager
def _progress() -> Iterator[ProgressFn]:
    """A live progress bar on a terminal; silent otherwise (logs, pipes, tests)."""
    if not err.is_terminal:
        yield lambda message, fraction: None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
    )
    with Progress(*columns, TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task("starting", total=1.0)
        update: Callable[[str, float], None] = lambda message, fraction: bar.update(  # noqa: E731
            task, description=message, completed=fraction
        )
        yield update


def _setup_logging(verbose: bool) -> None:
    if verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(message)s", stream=sys.stderr)
        logging.getLogger("c2s_quantize").setLevel(logging.DEBUG)


if __name__ == "__main__":
    main()
