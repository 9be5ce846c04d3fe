"""Compare a GGUF against its original on real C2S prompts and write a short report.

Reference: the original checkpoint through transformers (float32) when torch+transformers are
installed; otherwise a lossless GGUF (the checkpoint converted at its own precision, or a GGUF
you name). Metrics: identical token ids, max |Δ logit| over all prompt positions, top-1
next-token agreement, and agreement of the predicted label on cell-type prompts.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from gguf import GGUFReader, LlamaFileType

from .checkpoint import open_checkpoint
from .convert import convert_checkpoint
from .errors import QuantizeError
from .evaluate import ProbeRun, Tokenized, load_runs, run_probes
from .fileio import write_text_atomic
from .hf_lm import TransformersLM, transformers_available
from .probes import Probe, load_probes
from .progress import CancelToken, ProgressFn, Stage
from .provenance import Provenance
from .qtypes import QUANT_TYPES, lossless_type, recommendation
from .worker import run_worker


@dataclass(frozen=True)
class ProbeComparison:
    name: str
    tokens_identical: bool
    n_positions: int
    max_abs_logit_diff: float
    top1_agreement: float
    reference_label: str  # "" for probes without candidate labels
    candidate_label: str
    max_abs_label_loglik_diff: float


@dataclass(frozen=True)
class VerifyReport:
    """Verification result. Logit differences are raw (pre-softmax) logits; ``logit_scale`` is
    the largest |reference logit| seen, for scale."""

    candidate: str
    candidate_type: str
    reference: str
    probes: tuple[ProbeComparison, ...]
    min_top1: float
    logit_scale: float

    @property
    def tokenization_identical(self) -> bool:
        return all(p.tokens_identical for p in self.probes)

    @property
    def max_abs_logit_diff(self) -> float:
        return max(p.max_abs_logit_diff for p in self.probes)

    @property
    def top1_agreement(self) -> float:
        n = sum(p.n_positions for p in self.probes)
        return sum(p.top1_agreement * p.n_positions for p in self.probes) / max(n, 1)

    @property
    def labelled(self) -> tuple[ProbeComparison, ...]:
        return tuple(p for p in self.probes if p.reference_label)

    @property
    def label_agreement(self) -> float:
        same = sum(p.reference_label == p.candidate_label for p in self.labelled)
        return same / max(len(self.labelled), 1)

    @property
    def label_agreement_by_label(self) -> dict[str, tuple[int, int]]:
        """For each label the reference predicted: (probes where the GGUF agrees, probes)."""
        out: dict[str, tuple[int, int]] = {}
        for p in self.labelled:
            same, n = out.get(p.reference_label, (0, 0))
            out[p.reference_label] = (same + (p.candidate_label == p.reference_label), n + 1)
        return out

    @property
    def max_abs_label_loglik_diff(self) -> float:
        return max((p.max_abs_label_loglik_diff for p in self.labelled), default=0.0)

    @property
    def passed(self) -> bool:
        return self.tokenization_identical and self.top1_agreement >= self.min_top1

    def to_dict(self) -> dict:
        summary = {
            k: getattr(self, k)
            for k in (
                "passed",
                "tokenization_identical",
                "max_abs_logit_diff",
                "logit_scale",
                "top1_agreement",
                "label_agreement",
                "max_abs_label_loglik_diff",
            )
        }
        summary["label_agreement_by_label"] = {
            label: {"agreed": same, "probes": n}
            for label, (same, n) in self.label_agreement_by_label.items()
        }
        return {**asdict(self), "summary": summary}

    def to_markdown(self) -> str:
        lab = self.labelled
        same = sum(p.reference_label == p.candidate_label for p in lab)
        n_pos = sum(p.n_positions for p in self.probes)
        lines = [
            f"# c2s-quantize verification: {Path(self.candidate).name}",
            "",
            f"- candidate: `{self.candidate}` ({self.candidate_type})",
            f"- reference: {self.reference}",
            f"- verdict: **{'PASSED' if self.passed else 'FAILED'}** (identical token ids and "
            f"top-1 agreement >= {self.min_top1:.0%})",
            f"- {recommendation()}",
            "",
            "| metric | value |",
            "|---|---|",
            f"| identical token ids | {'yes' if self.tokenization_identical else 'NO'} "
            f"({sum(p.tokens_identical for p in self.probes)}/{len(self.probes)} prompts) |",
            f"| max abs logit difference | {self.max_abs_logit_diff:.4f} "
            f"(logit scale: max abs reference logit {self.logit_scale:.2f}) |",
            f"| top-1 next-token agreement | {self.top1_agreement:.2%} ({n_pos} positions) |",
            f"| cell-type label agreement | {same}/{len(lab)} ({self.label_agreement:.0%}) |",
            f"| max abs label log-likelihood difference | "
            f"{self.max_abs_label_loglik_diff:.4f} nats |",
            "",
            "| reference label | probes | GGUF agrees |",
            "|---|---|---|",
        ]
        lines += [
            f"| {label} | {n} | {same}/{n} |"
            for label, (same, n) in self.label_agreement_by_label.items()
        ]
        lines += [
            "",
            "| prompt | same ids | positions | max abs Δ logit | top-1 | reference label | "
            "GGUF label |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {p.name} | {'yes' if p.tokens_identical else 'NO'} | {p.n_positions} | "
            f"{p.max_abs_logit_diff:.4f} | {p.top1_agreement:.2%} | {p.reference_label} | "
            f"{p.candidate_label} |"
            for p in self.probes
        ]
        return "\n".join(lines) + "\n"

    def write(self, prefix: Path) -> tuple[Path, Path]:
        """Write ``<prefix>.md`` and ``<prefix>.json`` atomically; return both paths."""
        md, js = prefix.with_name(prefix.name + ".md"), prefix.with_name(prefix.name + ".json")
        write_text_atomic(md, self.to_markdown())
        write_text_atomic(js, json.dumps(self.to_dict(), indent=2))
        return md, js


def verify_gguf(
    original: Path,
    gguf: Path,
    *,
    use_transformers: bool | None = None,
    reference_name: str | None = None,
    min_top1: float = 0.9,
    threads: int = 0,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> VerifyReport:
    """Compare ``gguf`` with ``original`` (a checkpoint folder or a reference GGUF).

    ``use_transformers`` None means: use torch+transformers when ``original`` is a folder and
    they are installed; otherwise the folder is converted to a lossless GGUF first.
    ``threads`` is llama.cpp's thread count (0 = its default).
    """
    (report,) = verify_ggufs(
        original,
        [gguf],
        use_transformers=use_transformers,
        reference_name=reference_name,
        min_top1=min_top1,
        threads=threads,
        progress=progress,
        cancel=cancel,
    )
    return report


def verify_ggufs(
    original: Path,
    ggufs: Sequence[Path],
    *,
    use_transformers: bool | None = None,
    reference_name: str | None = None,
    min_top1: float = 0.9,
    threads: int = 0,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> list[VerifyReport]:
    """:func:`verify_gguf` for several GGUFs (e.g. one per type) against one reference run."""
    for gguf in ggufs:
        if not gguf.is_file():
            raise QuantizeError("no such GGUF file", "check the path", gguf)
    if not original.exists():
        raise QuantizeError("no such checkpoint folder or GGUF file", "check the path", original)
    stage, probes, reports = Stage(progress), load_probes(), []
    step = 0.5 / max(len(ggufs), 1)
    with tempfile.TemporaryDirectory(prefix=".c2s-verify-", dir=ggufs[0].parent) as tmp:
        work = Path(tmp)
        ref_runs, described = _reference_runs(
            original, work, use_transformers, threads, stage.sub(0.0, 0.5), cancel
        )
        forced = [r.tokens for r in ref_runs]
        for i, gguf in enumerate(ggufs):
            cand = evaluate_gguf(
                gguf,
                probes,
                forced,
                work / f"candidate{i}",
                threads=threads,
                progress=stage.sub(0.5 + i * step, 0.5 + (i + 1) * step),
                cancel=cancel,
            )
            comparisons, scale = compare_runs(probes, ref_runs, cand)
            reports.append(
                VerifyReport(
                    str(gguf),
                    gguf_type_name(gguf),
                    reference_name or described,
                    comparisons,
                    min_top1,
                    scale,
                )
            )
    stage("verified", 1.0)
    return reports


def types_markdown(reports: Sequence[VerifyReport]) -> str:
    """One row per candidate type: verdict, top-1 and label agreement (overall, per label)."""
    labels = list(dict.fromkeys(k for r in reports for k in r.label_agreement_by_label))
    head = ["type", "verdict", "top-1", "label agreement", *labels]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in reports:
        by_label = r.label_agreement_by_label
        cells = [f"{a}/{n}" for a, n in (by_label.get(lab, (0, 0)) for lab in labels)]
        same = sum(a for a, _ in by_label.values())
        row = [
            r.candidate_type,
            "PASSED" if r.passed else "FAILED",
            f"{r.top1_agreement:.2%}",
            f"{r.label_agreement:.0%} ({same}/{len(r.labelled)})",
            *cells,
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _reference_runs(
    original: Path,
    work: Path,
    use_transformers: bool | None,
    threads: int,
    stage: Stage,
    cancel: CancelToken | None,
) -> tuple[list[ProbeRun], str]:
    """Probe runs of the reference and a description of it (temp files go under ``work``)."""
    probes, out = load_probes(), work / "reference"
    if original.is_file():
        runs = evaluate_gguf(
            original, probes, None, out, threads=threads, progress=stage, cancel=cancel
        )
        return runs, f"GGUF `{original}` ({gguf_type_name(original)})"
    if use_transformers is None:
        use_transformers = transformers_available()
    if use_transformers:
        if not transformers_available():
            raise QuantizeError(
                "torch and transformers are not installed",
                "install them, or compare against a lossless GGUF (--reference gguf)",
            )
        stage("loading the original with transformers", 0.0)
        out.mkdir()
        runs = run_probes(TransformersLM(original), probes, out, progress=stage, cancel=cancel)
        return runs, f"transformers float32, `{original}`"
    ckpt = open_checkpoint(original)
    qtype, ref = lossless_type(ckpt.source_dtype), work / "reference.gguf"
    convert_checkpoint(ckpt, ref, qtype, Provenance(), progress=stage.sub(0, 0.5), cancel=cancel)
    runs = evaluate_gguf(
        ref, probes, None, out, threads=threads, progress=stage.sub(0.5, 1.0), cancel=cancel
    )
    return runs, f"lossless {qtype.name} GGUF of `{original}` (torch/transformers not installed)"


def evaluate_gguf(
    gguf: Path,
    probes: Sequence[Probe],
    forced: Sequence[Tokenized] | None,
    out_dir: Path,
    *,
    threads: int = 0,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> list[ProbeRun]:
    """Evaluate probes on a GGUF in a worker process (llama.cpp may abort on a bad file).

    With ``forced`` token ids (the reference's), logits line up position by position.
    """
    stage = Stage(progress)
    out_dir.mkdir(exist_ok=True)
    request = {
        "gguf": str(gguf),
        "probes": [asdict(p) for p in probes],
        "forced": [asdict(f) for f in forced] if forced is not None else None,
        "out_dir": str(out_dir),
        "threads": threads,
    }
    (out_dir / "request.json").write_text(json.dumps(request), encoding="utf-8")

    def on_line(line: str) -> None:
        if line.startswith("@progress "):
            _, fraction, message = line.split(" ", 2)
            stage(message, float(fraction))

    run_worker(
        ["evaluate", str(out_dir / "request.json")],
        what="evaluating the GGUF",
        path=gguf,
        on_line=on_line,
        cancel=cancel,
    )
    return load_runs(out_dir / "runs.json")


def compare_runs(
    probes: Sequence[Probe], ref: Sequence[ProbeRun], cand: Sequence[ProbeRun]
) -> tuple[tuple[ProbeComparison, ...], float]:
    """Per-probe comparisons, and the logit scale (max abs reference logit)."""
    out, scale = [], 0.0
    for probe, r, c in zip(probes, ref, cand, strict=True):
        a, b = np.load(r.logits_file), np.load(c.logits_file)
        scale = max(scale, float(np.abs(a).max()))
        ll_diff = [abs(x - y) for x, y in zip(r.label_logliks, c.label_logliks, strict=True)]
        out.append(
            ProbeComparison(
                probe.name,
                r.tokens == c.tokens,
                len(a),
                float(np.abs(a - b).max()),
                float((a.argmax(axis=1) == b.argmax(axis=1)).mean()),
                _best(probe, r.label_logliks),
                _best(probe, c.label_logliks),
                max(ll_diff, default=0.0),
            )
        )
    return tuple(out), scale


def _best(probe: Probe, logliks: Sequence[float]) -> str:
    return probe.labels[int(np.argmax(logliks))] if logliks else ""


def gguf_type_name(path: Path) -> str:
    """The ``--type`` name of a GGUF (from ``general.file_type``)."""
    field = GGUFReader(path).fields.get("general.file_type")
    if field is None:
        return "unknown"
    file_type = int(field.contents())
    names = {int(t.file_type): name for name, t in QUANT_TYPES.items()}
    return names.get(file_type) or LlamaFileType(file_type).name.lower()
