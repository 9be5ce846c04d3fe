"""LoRA fine-tuning of a C2S checkpoint on labelled cells (torch, transformers, peft).

The cells of :func:`~.split.plan_split`'s training split become the released cell-type prompt
followed by their label (``" <label>."`` and EOS; loss on the answer only), drawn with equal
weight per label when ``balance`` is set. The held-out cells are scored before and after, as
the engine scores labels. Every ``checkpoint_every`` steps, at each epoch's end and on cancel
the adapter weights, optimizer, step and RNG are saved atomically under a key of the inputs
and options, so the same run started again resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path, check_writable, share_like_new_files
from ..audit import file_sha256, folder_sha256
from ..catalog import DEFAULT_GENES
from ..checkpoints import checkpoint_dir, run_key
from ..dataset import open_dataset
from ..errors import Cancelled, DataError, InputFileError, OutputError
from ..progress import CancelToken, ProgressFn, check_cancel, no_progress
from ..prompts import CELL_TYPE_PREDICTION, template
from ..sentences import cell_sentences
from .base import BaseInfo, TrainingUnavailable, base_folder, check_base, train_available
from .examples import Example, ExampleBuilder
from .options import DEVICES, FinetuneOptions, FinetuneResult, SplitPlan, StepReport
from .scoring import accuracy, label_logprobs
from .split import plan_split

StepFn = Callable[[StepReport], None]
_FORMAT = 1
_SAVE_S = 120.0
"""A checkpoint is also written when the last one is older than this (slow steps)."""


@dataclass
class _Job:
    """Everything a run has prepared before its first step."""

    base: BaseInfo
    split: SplitPlan
    train: list[Example]
    holdout: list[Example]
    train_truth: np.ndarray
    holdout_truth: np.ndarray
    tokenizer: Any
    model: Any
    device: Any
    data_path: Path
    data_sha: str
    base_files: list[str]
    warnings: list[str]


def finetune(
    data_path: str | Path,
    base_dir: str | Path,
    out_path: str | Path,
    options: FinetuneOptions,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    on_step: StepFn | None = None,
    merge_dir: str | Path | None = None,
    overwrite: bool = True,
    read_options: Mapping[str, Any] | None = None,
) -> FinetuneResult:
    """Fine-tune ``base_dir`` on the labelled cells of ``data_path``; write the adapter GGUF
    (and ``merge_dir``, a merged checkpoint, when given). See the module docstring.
    ``base_dir`` may be a GGUF file when c2s-quantize can export it to a checkpoint."""
    progress = progress or no_progress
    out = check_writable(out_path, overwrite=overwrite)
    merged = _check_merge_dir(merge_dir, overwrite)
    hint = train_available()
    if hint:
        raise TrainingUnavailable(hint)
    with base_folder(base_dir, progress, cancel) as folder:
        return _finetune(
            data_path, folder, out, options, progress, cancel, on_step, merged, read_options
        )


def _finetune(
    data_path: str | Path,
    base_dir: Path,
    out: Path,
    options: FinetuneOptions,
    progress: ProgressFn,
    cancel: CancelToken | None,
    on_step: StepFn | None,
    merged: Path | None,
    read_options: Mapping[str, Any] | None,
) -> FinetuneResult:
    t0 = time.perf_counter()
    job = _prepare(data_path, base_dir, options, progress, cancel, read_options)
    import torch

    ckpt = checkpoint_dir() / f"finetune-{_key(job, options)[:32]}.pt"
    state = _load_state(ckpt)
    if state is not None:
        before = float(state["accuracy_before"])
        progress(0.05, f"resuming from step {state['step']}")
    else:
        progress(0.02, f"scoring {len(job.holdout):,} held-out cells before training")
        logp = label_logprobs(job.model, job.holdout, job.device, _pad_id(job.tokenizer), cancel)
        before = accuracy(logp, job.holdout_truth)
    model = _with_lora(job, options)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=options.lr, weight_decay=0.0)
    steps_per_epoch = math.ceil(job.split.n_train / options.batch_size)
    total = epochs_steps = options.epochs * steps_per_epoch
    if options.max_steps is not None:
        total = min(total, options.max_steps)
    schedule = _schedule(job.train_truth, len(job.split.labels), options, epochs_steps)
    step, losses, history = 0, [], []
    if state is not None:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, state["lora"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        step, losses, history = int(state["step"]), list(state["losses"]), list(state["history"])
    resumed = step
    after = history[-1] if history else before

    saved = [time.monotonic()]

    def save() -> None:
        _save_state(ckpt, model, opt, step, before, losses, history)
        saved[0] = time.monotonic()

    model.train()
    train_seconds, n_timed = 0.0, 0
    while step < total:
        if cancel is not None and cancel.is_set():
            save()
            raise Cancelled()
        batch = [job.train[i] for i in schedule[step]]
        truth = [int(job.train_truth[i]) for i in schedule[step]]
        t_step = time.perf_counter()
        loss = _train_step(model, opt, batch, truth, job, params)
        train_seconds += time.perf_counter() - t_step
        losses.append(loss)
        step += 1
        n_timed += 1
        per_step = train_seconds / n_timed
        acc = None
        if step % steps_per_epoch == 0 or step == total:
            save()  # a cancel while the held-out cells are scored keeps this step
            model.eval()
            logp = label_logprobs(model, job.holdout, job.device, _pad_id(job.tokenizer), cancel)
            acc = after = accuracy(logp, job.holdout_truth)
            history.append(acc)
            model.train()
            save()
        elif step % max(1, options.checkpoint_every) == 0 or time.monotonic() - saved[0] > _SAVE_S:
            save()
        epoch = (step - 1) // steps_per_epoch + 1
        if on_step is not None:
            on_step(StepReport(step, total, epoch, loss, per_step, acc))
        left = per_step * (total - step)
        progress(
            0.05 + 0.85 * step / total,
            f"step {step}/{total} (epoch {epoch}), loss {loss:.3f}, "
            f"{per_step:.2f} s/step, {left / 60:.1f} min left",
        )
    check_cancel(cancel)
    progress(0.92, "writing the adapter")
    provenance = _provenance(job, options, before, after, step, time.perf_counter() - t0)
    with tempfile.TemporaryDirectory(prefix="c2s-lora-") as tmp:
        peft_dir = Path(tmp) / "adapter"
        model.save_pretrained(peft_dir)
        _write_adapter(peft_dir, job.base.path, out, provenance)
    if merged is not None:
        progress(0.96, "writing the merged checkpoint")
        _write_merged(model, job.tokenizer, merged)
    ckpt.unlink(missing_ok=True)
    progress(1.0, "done")
    epoch_losses = [
        float(np.mean(losses[i : i + steps_per_epoch]))
        for i in range(0, len(losses), steps_per_epoch)
    ]
    return FinetuneResult(
        out,
        before,
        after,
        job.split,
        time.perf_counter() - t0,
        step,
        out.stat().st_size,
        merged,
        resumed_step=resumed,
        losses=tuple(epoch_losses),
        device=str(job.device),
        warnings=tuple(job.warnings),
    )


def measure_step(
    data_path: str | Path,
    base_dir: str | Path,
    options: FinetuneOptions,
    *,
    steps: int = 3,
    read_options: Mapping[str, Any] | None = None,
) -> float:
    """Seconds per training step on these cells (the mean after one warm-up step); nothing is
    written and the model is left as it was loaded."""
    import torch

    with base_folder(base_dir) as folder:
        job = _prepare(data_path, folder, options, no_progress, None, read_options, holdout=False)
    model = _with_lora(job, options)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=options.lr)
    rng = np.random.default_rng(options.seed)
    model.train()
    times = []
    for _ in range(max(2, steps)):
        pick = rng.choice(len(job.train), min(options.batch_size, len(job.train)), replace=True)
        t = time.perf_counter()
        _train_step(model, opt, [job.train[i] for i in pick], [0] * len(pick), job, params)
        times.append(time.perf_counter() - t)
    return float(np.mean(times[1:]))


# -- preparation --------------------------------------------------------------------------------
def _prepare(
    data_path: str | Path,
    base_dir: str | Path,
    options: FinetuneOptions,
    progress: ProgressFn,
    cancel: CancelToken | None,
    read_options: Mapping[str, Any] | None,
    holdout: bool = True,
) -> _Job:
    hint = train_available()
    if hint:
        raise TrainingUnavailable(hint)
    base = check_base(base_dir)
    progress(0.0, "reading the cells")
    n_genes = options.n_genes or DEFAULT_GENES
    with open_dataset(data_path, **dict(read_options or {})) as ds:
        split = plan_split(ds, options)
        rows = np.array(split.train_rows + (split.holdout_rows if holdout else ()), np.int64)
        check_cancel(cancel)
        progress(0.005, f"building {len(rows):,} cell sentences")
        sentences = cell_sentences(ds, rows, top_k=n_genes)
        from .split import cell_labels

        labels = cell_labels(ds, options.label_key)[rows]
        organism = ds.organism
    check_cancel(cancel)
    device_name = _check_device(options.device)
    data = Path(data_path)
    data_sha = (folder_sha256(data) if data.is_dir() else file_sha256(data)) or ""
    progress(0.01, "loading the model")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if options.threads:
        torch.set_num_threads(options.threads)
    device = torch.device(device_name)
    dtype = torch.float32
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        dtype = torch.bfloat16
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    extra = {"attn_implementation": "eager"} if base.architecture.startswith("Gemma2") else {}
    torch.manual_seed(options.seed)
    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=dtype, **extra).to(device)
    model.eval()
    build = ExampleBuilder(
        tokenizer, split.labels, organism, n_genes, base.n_ctx, options.template_index
    )
    examples = []
    for s in sentences:
        check_cancel(cancel)
        examples.append(build(s))
    index = {lab: i for i, lab in enumerate(split.labels)}
    truth = np.array([index[str(lab)] for lab in labels], dtype=np.int64)
    n = len(split.train_rows)
    base_files = [f"{file_sha256(p)}  {p.name}" for p in sorted(base.path.glob("*.safetensors"))]
    return _Job(
        base,
        split,
        examples[:n],
        examples[n:],
        truth[:n],
        truth[n:],
        tokenizer,
        model,
        device,
        data,
        data_sha,
        base_files,
        list(filter(None, [build.warning()])),
    )


def _check_device(device: str) -> str:
    import torch

    if device not in DEVICES:
        raise DataError(f"unknown device '{device}'", hint=f"one of {', '.join(DEVICES)}")
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if device == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if (device == "cuda" and not cuda) or (device == "mps" and not mps):
        raise DataError(
            f"no {device.upper()} device for this torch ({torch.__version__})",
            hint="use --device cpu, or install a torch built for it",
        )
    return device


def _with_lora(job: _Job, options: FinetuneOptions) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=options.rank,
        lora_alpha=options.alpha,
        lora_dropout=0.0,
        target_modules=list(job.base.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    import torch

    torch.manual_seed(options.seed)
    with warnings.catch_warnings():  # transformers' deprecation notes on peft's calls
        warnings.simplefilter("ignore", FutureWarning)
        return get_peft_model(job.model, config)


def _schedule(
    truth: np.ndarray, n_labels: int, options: FinetuneOptions, total: int
) -> list[np.ndarray]:
    """The training cells of every step (seeded: a resumed run draws the same batches)."""
    rng = np.random.default_rng(options.seed + 1)
    n = len(truth)
    weights = None
    if options.balance:
        counts = np.bincount(truth, minlength=n_labels).astype(np.float64)
        weights = 1.0 / counts[truth]
        weights /= weights.sum()
    steps_per_epoch = math.ceil(n / options.batch_size)
    out: list[np.ndarray] = []
    while len(out) < total:
        order = rng.choice(n, n, replace=True, p=weights) if options.balance else rng.permutation(n)
        out.extend(
            order[i * options.batch_size : (i + 1) * options.batch_size]
            for i in range(steps_per_epoch)
        )
    return out[:total]


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id
    return int(pad if pad is not None else tokenizer.eos_token_id or 0)


def _train_step(
    model: Any, opt: Any, batch: list[Example], truth: list[int], job: _Job, params: list[Any]
) -> float:
    """One AdamW step on ``batch`` (each cell with its own label); returns the loss."""
    import torch

    eos = job.tokenizer.eos_token_id
    seqs, starts = [], []
    for ex, t in zip(batch, truth, strict=True):
        seqs.append(list(ex.sequences[t]) + ([eos] if eos is not None else []))
        starts.append(ex.splits[t])
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), _pad_id(job.tokenizer), dtype=torch.long)
    labels = torch.full_like(ids, -100)
    mask = torch.zeros_like(ids)
    for i, (seq, start) in enumerate(zip(seqs, starts, strict=True)):
        ids[i, : len(seq)] = torch.tensor(seq)
        labels[i, start : len(seq)] = torch.tensor(seq[start:])
        mask[i, : len(seq)] = 1
    d = job.device
    loss = model(input_ids=ids.to(d), attention_mask=mask.to(d), labels=labels.to(d)).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())


# -- checkpoints and outputs --------------------------------------------------------------------
def _key(job: _Job, options: FinetuneOptions) -> str:
    decisive = dataclasses.asdict(options)
    for k in ("device", "checkpoint_every", "threads"):
        decisive.pop(k, None)
    return run_key(
        {
            "data": job.data_sha,
            "base": job.base_files,
            "architecture": job.base.architecture,
            "train": list(job.split.train_rows),
            "holdout": list(job.split.holdout_rows),
            "options": decisive,
            "format": _FORMAT,
        }
    )


def _load_state(path: Path) -> dict[str, Any] | None:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - a damaged checkpoint: start again
        return None
    return state if isinstance(state, dict) and state.get("format") == _FORMAT else None


def _save_state(
    path: Path,
    model: Any,
    opt: Any,
    step: int,
    before: float,
    losses: list[float],
    history: list[float],
) -> None:
    import torch
    from peft import get_peft_model_state_dict

    state = {
        "format": _FORMAT,
        "step": step,
        "lora": {k: v.detach().cpu() for k, v in get_peft_model_state_dict(model).items()},
        "optimizer": opt.state_dict(),
        "rng": torch.get_rng_state(),
        "accuracy_before": before,
        "losses": losses,
        "history": history,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _check_merge_dir(merge_dir: str | Path | None, overwrite: bool) -> Path | None:
    if merge_dir is None:
        return None
    target = Path(merge_dir)
    if target.exists() and not overwrite:
        raise OutputError("already exists", path=target, hint="pass --overwrite to replace it")
    if target.exists() and not target.is_dir():
        raise OutputError("is a file, not a folder", path=target, hint="give a folder name")
    check_writable(target.parent / ".c2s-merge-check")
    return target


def _write_merged(model: Any, tokenizer: Any, target: Path) -> None:
    """The base with the LoRA merged in, as a safetensors checkpoint folder (replaced whole)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        merged = model.merge_and_unload()
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        share_like_new_files(tmp)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
        tmp.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _lora() -> Any:
    try:
        from c2s_quantize import lora
    except ImportError as exc:
        raise TrainingUnavailable(
            f"the adapter writer (c2s-quantize) is missing ({exc})",
            hint="install the c2s-quantize package next to C2S Desktop",
        ) from exc
    return lora


def _base_files(base_dir: Path) -> tuple[str, ...]:
    """The base's ``"<sha256>  <file>"`` strings, as the converter records them."""
    from c2s_quantize.errors import QuantizeError

    try:
        return tuple(_lora().base_files(base_dir))
    except QuantizeError as exc:
        raise InputFileError(exc.message, path=exc.path or base_dir, hint=exc.hint) from None


def _write_adapter(peft_dir: Path, base_dir: Path, out: Path, provenance: dict[str, Any]) -> None:
    from c2s_quantize.errors import QuantizeError

    try:
        _lora().write_lora_gguf(peft_dir, base_dir, out, provenance)
    except QuantizeError as exc:
        raise OutputError(exc.message, path=exc.path or out, hint=exc.hint) from None


def _provenance(
    job: _Job, options: FinetuneOptions, before: float, after: float, steps: int, seconds: float
) -> dict[str, Any]:
    import peft
    import torch
    import transformers

    from ... import __version__

    return {
        "base": {
            "path": str(job.base.path),
            "name": job.base.name,
            "architecture": job.base.architecture,
            "files": job.base_files,
        },
        "base_name": job.base.name,
        "data": {"path": str(job.data_path), "sha256": job.data_sha},
        "label_key": options.label_key,
        "labels": list(job.split.labels),
        "options": dataclasses.asdict(options),
        "n_genes": options.n_genes or DEFAULT_GENES,
        "template": template(CELL_TYPE_PREDICTION, options.template_index).id,
        "split": job.split.as_dict(),
        "accuracy_before": before,
        "accuracy_after": after,
        "steps": steps,
        "seconds": round(seconds, 1),
        "device": str(job.device),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": {
            "c2s_desktop": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        },
        "warnings": job.warnings,
    }


def provenance_json(provenance: Mapping[str, Any]) -> str:
    """The provenance as the adapter's ``c2s.adapter.provenance`` string."""
    return json.dumps(provenance, sort_keys=True, default=str)
