"""``c2s finetune``: LoRA fine-tuning of a C2S checkpoint on a lab's labelled cells."""

from __future__ import annotations

import dataclasses
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from .cli_common import (
    DATA_DEFAULTS,
    CellsOpt,
    DataArg,
    DataArgs,
    GenesOpt,
    OverwriteOpt,
    app,
    check_output,
    err,
    open_data,
    options,
    out,
    progress_bar,
    warn,
)
from .core import audit
from .core.finetune.options import DEVICES, FinetuneOptions, StepReport

_D = FinetuneOptions(label_key="")


@app.command()
@options
def finetune(
    data: DataArg,
    label_key: Annotated[
        str, typer.Option("--label-key", help="obs column of the labels to learn.")
    ],
    base: Annotated[
        Path,
        typer.Option("--base", help="Checkpoint folder (config.json, *.safetensors) or GGUF."),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Adapter .gguf to write.")],
    cells: CellsOpt = None,
    holdout: Annotated[
        float, typer.Option("--holdout", min=0.0, max=1.0, help="Held-out fraction per label.")
    ] = _D.holdout,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over the cells.")] = (
        _D.epochs
    ),
    rank: Annotated[int, typer.Option("--rank", min=1, help="LoRA rank.")] = _D.rank,
    alpha: Annotated[int, typer.Option("--alpha", min=1, help="LoRA alpha.")] = _D.alpha,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Learning rate.")] = _D.lr,
    n_genes: GenesOpt = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Cells per step.")
    ] = _D.batch_size,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", min=1, help="Stop after N steps.")
    ] = None,
    balance: Annotated[
        bool, typer.Option("--balance/--no-balance", help="Sample every label equally often.")
    ] = _D.balance,
    device: Annotated[
        str, typer.Option("--device", help=f"Where to train: {', '.join(DEVICES)}.")
    ] = _D.device,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (split, sampling).")] = 0,
    merge: Annotated[
        Path | None,
        typer.Option("--merge", help="Also write the merged checkpoint folder (c2s-quantize)."),
    ] = None,
    overwrite: OverwriteOpt = False,
    data_args: DataArgs = DATA_DEFAULTS,
) -> None:
    """LoRA-tune a C2S checkpoint to answer with these labels; write a GGUF adapter."""
    from .core.errors import DataError
    from .core.finetune import plan_split, train_available
    from .core.finetune.base import TrainingUnavailable, can_export_gguf, check_base, is_gguf

    if device not in DEVICES:
        raise DataError(f"unknown device '{device}'", hint=f"one of {', '.join(DEVICES)}")
    opts = FinetuneOptions(
        label_key=label_key,
        cells=cells,
        holdout=holdout,
        epochs=epochs,
        rank=rank,
        alpha=alpha,
        lr=lr,
        n_genes=n_genes,
        device=device,
        seed=seed,
        batch_size=batch_size,
        balance=balance,
        max_steps=max_steps,
        threads=threads,
    )
    check_output(output, overwrite, data)
    if merge is not None:
        check_output(merge, overwrite, data)
    if not (is_gguf(base) and can_export_gguf()):
        check_base(base)
    with open_data(data, data_args) as ds:
        split = plan_split(ds, opts)
    hint = train_available()
    if hint:
        raise TrainingUnavailable(hint)
    out.print(f"split: {split.summary()}", markup=False, soft_wrap=True)
    if split.unlabelled:
        err.print(f"{split.unlabelled:,} selected cells have no label and are left out")
    from .core.finetune.train import finetune as run

    first = [True]

    def on_step(report: StepReport) -> None:
        if first[0] and report.step > 1:
            out.print(f"resuming an interrupted run from step {report.step - 1}", markup=False)
        first[0] = False
        if report.heldout_accuracy is not None:
            out.print(
                f"epoch {report.epoch}: step {report.step}/{report.total_steps}, "
                f"loss {report.loss:.3f}, held-out accuracy {report.heldout_accuracy:.1%}, "
                f"{report.seconds_per_step:.2f} s/step",
                markup=False,
            )

    read = {f.name: getattr(data_args, f.name) for f in dataclasses.fields(data_args)}
    params = {**dataclasses.asdict(opts), "base": str(base), "merge": str(merge or "")}
    with audit.job("finetune", inputs=[data, base], params=params) as job:
        with progress_bar("finetune") as (update, cancel), _stop_on_ctrl_c(cancel):
            result = run(
                data,
                base,
                output,
                opts,
                progress=update,
                cancel=cancel,
                on_step=on_step,
                merge_dir=merge,
                overwrite=overwrite,
                read_options=read,
            )
        job.outputs.append(output)
        if result.merged_dir is not None:
            job.outputs.append(result.merged_dir)
    warn(result.warnings)
    out.print(
        f"held-out accuracy: before {result.accuracy_before:.1%}, after "
        f"{result.accuracy_after:.1%} ({split.n_holdout:,} cells)",
        markup=False,
    )
    out.print(
        f"{result.steps} steps in {result.seconds / 60:.1f} min on {result.device}, "
        f"adapter {result.adapter_bytes / 1e6:.2f} MB",
        markup=False,
    )
    if result.merged_dir is not None:
        err.print(f"wrote {result.merged_dir}", markup=False, soft_wrap=True)
    err.print(f"wrote {result.adapter_path}", markup=False, soft_wrap=True)


@contextmanager
def _stop_on_ctrl_c(cancel: threading.Event) -> Iterator[None]:
    """The first Ctrl-C asks the run to stop after its step (its checkpoint saved, so the same
    command resumes); a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        err.print("stopping after this step; run the same command again to resume")

    previous = signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
