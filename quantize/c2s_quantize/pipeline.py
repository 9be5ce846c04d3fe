"""The whole job: checkpoint folder -> (lossless GGUF ->) output type -> optional verification.

This is what the CLI and the app's model manager call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .architectures import arch_spec
from .checkpoint import CONFIG, Checkpoint, architecture_of, open_checkpoint, read_config
from .convert import convert_checkpoint, plan_tensors
from .errors import QuantizeError
from .fileio import atomic_output, ensure_free_space, sha256_file, temporary_path
from .hf_lm import transformers_available
from .progress import CancelToken, ProgressFn, Stage
from .provenance import Provenance, SourceInfo, make_provenance, recorded_source_files
from .qtypes import QuantType, estimate_bytes, lossless_type, quant_type
from .quantize import quantize_gguf
from .verify import VerifyReport, verify_gguf

_MARGIN = 64 << 20


@dataclass(frozen=True)
class QuantizeResult:
    """What :func:`quantize_checkpoint` produced."""

    output: Path
    quant_type: str
    architecture: str
    size_bytes: int
    seconds: float
    provenance: Provenance
    verification: VerifyReport | None
    note: str = ""  # e.g. why verification was skipped


def quantize_checkpoint(
    folder: Path,
    output: Path,
    qtype_name: str = "q8_0",
    *,
    source: SourceInfo | None = None,
    allow_pickle: bool = False,
    verify: bool = False,
    hash_sources: bool = True,
    threads: int = 0,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> QuantizeResult:
    """Convert the checkpoint in ``folder`` to a ``qtype_name`` GGUF at ``output``.

    Output is written atomically: on error or cancel no partial file remains. Quantized types go
    through a lossless intermediate GGUF (kept next to the output, then removed).
    ``verify`` compares the result with the original (see :func:`verify_gguf`).
    ``threads``: llama.cpp threads for quantizing and verifying (0 = all cores / its default).
    """
    start, stage = time.monotonic(), Stage(progress)
    qtype = quant_type(qtype_name)
    folder, output = Path(folder), Path(output)
    if output.is_dir():
        raise QuantizeError(
            "output is a folder", "give a file name such as model.q8_0.gguf", output
        )
    arch_spec(architecture_of(read_config(folder)), folder / CONFIG)
    ckpt = open_checkpoint(folder, allow_pickle=allow_pickle)
    lossless = lossless_type(ckpt.source_dtype)
    hf = verify and transformers_available()
    needs_reference = qtype.is_quantized or (verify and not hf and qtype != lossless)
    _check_space(ckpt, output, qtype, lossless if needs_reference else None)
    hashes = hash_checkpoint_files(ckpt, stage.sub(0.0, 0.1) if hash_sources else None, cancel)
    info = source or SourceInfo.for_folder(folder)
    prov = make_provenance(info, folder, ckpt.architecture, ckpt.source_dtype, hashes)
    if hash_sources and (recorded := recorded_source_files(folder)) is not None:
        # A folder exported from a GGUF keeps the identity of the checkpoint behind that GGUF,
        # so adapters trained on the export also match what it converts to.
        prov = dataclasses.replace(prov, source_files=recorded)
    work = stage.sub(0.1, 0.7 if verify else 1.0)
    write = work.sub(0.5 if needs_reference else 0.0, 1.0)
    with _reference_gguf(ckpt, output, lossless, prov, needs_reference, work, cancel) as ref:
        with atomic_output(output) as tmp:
            if ref is not None and qtype.is_quantized:
                quantize_gguf(ref, tmp, qtype, threads=threads, progress=write, cancel=cancel)
            else:
                convert_checkpoint(ckpt, tmp, qtype, prov, progress=write, cancel=cancel)
        report, note = None, ""
        if verify:
            report, note = _verify(
                folder, output, ref, lossless, hf, threads, stage.sub(0.7, 1.0), cancel
            )
    stage("done", 1.0)
    seconds = time.monotonic() - start
    size = output.stat().st_size
    return QuantizeResult(output, qtype.name, ckpt.architecture, size, seconds, prov, report, note)


def _verify(
    folder: Path,
    output: Path,
    ref: Path | None,
    lossless: QuantType,
    hf: bool,
    threads: int,
    stage: Stage,
    cancel: CancelToken | None,
) -> tuple[VerifyReport | None, str]:
    """Compare with transformers if available, else with the lossless GGUF ``ref``."""
    if not hf and ref is None:
        return None, (
            "verification skipped: the output holds the checkpoint's weights unchanged; "
            "install torch and transformers to compare it with the original"
        )
    return verify_gguf(
        folder if hf else ref,
        output,
        use_transformers=hf,
        threads=threads,
        reference_name=None if hf else f"lossless {lossless.name} GGUF of `{folder}`",
        progress=stage,
        cancel=cancel,
    ), ""


@contextlib.contextmanager
def _reference_gguf(
    ckpt: Checkpoint,
    output: Path,
    lossless: QuantType,
    prov: Provenance,
    wanted: bool,
    stage: Stage,
    cancel: CancelToken | None,
) -> Iterator[Path | None]:
    """A temporary lossless GGUF of the checkpoint (None when not wanted); always removed."""
    if not wanted:
        yield None
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    with temporary_path(output.parent, output.name + f".{lossless.name}") as ref:
        convert_checkpoint(ckpt, ref, lossless, prov, progress=stage.sub(0.0, 0.5), cancel=cancel)
        yield ref


def _check_space(
    ckpt: Checkpoint, output: Path, qtype: QuantType, intermediate: QuantType | None
) -> None:
    spec = arch_spec(ckpt.architecture, ckpt.folder / CONFIG)
    planned = plan_tensors(ckpt, spec, lossless_type("F32"))
    n_matrix = sum(math.prod(p.source.shape) for p in planned if len(p.source.shape) > 1)
    n_vector = sum(math.prod(p.source.shape) for p in planned if len(p.source.shape) <= 1)
    needed = estimate_bytes(n_matrix, n_vector, qtype) + _MARGIN
    if intermediate is not None:
        needed += estimate_bytes(n_matrix, n_vector, intermediate)
    directory = output.absolute().parent
    while not directory.exists():
        directory = directory.parent
    ensure_free_space(directory, needed, f"writing {output.name}")


def hash_checkpoint_files(
    ckpt: Checkpoint, stage: Stage | None, cancel: CancelToken | None
) -> dict[str, str]:
    """SHA-256 of weight, config and tokenizer files (``{}`` when ``stage`` is None)."""
    if stage is None:
        return {}
    files = [*ckpt.weight_files, ckpt.folder / CONFIG, *ckpt.tokenizer_files]
    total, done, hashes = sum(f.stat().st_size for f in files) or 1, 0, {}
    for f in files:
        size = f.stat().st_size
        part = stage.sub(done / total, (done + size) / total)
        hashes[f.name] = sha256_file(f, part, cancel)
        done += size
    return hashes
