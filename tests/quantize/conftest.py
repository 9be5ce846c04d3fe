"""Session fixtures for the c2s-quantize tests: tiny trained checkpoints built once, GGUFs
converted once, and the transformers reference evaluated once per architecture."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("GGML_NO_BACKTRACE", "1")  # no gdb backtrace if llama.cpp aborts

import quantize_builders as qb  # noqa: E402
import torch  # noqa: E402

from c2s_quantize.cli import main  # noqa: E402
from c2s_quantize.evaluate import ProbeRun, run_probes  # noqa: E402
from c2s_quantize.hf_lm import TransformersLM  # noqa: E402
from c2s_quantize.pipeline import quantize_checkpoint  # noqa: E402
from c2s_quantize.probes import load_probes  # noqa: E402
from c2s_quantize.verify import VerifyReport, compare_runs, evaluate_gguf  # noqa: E402

TRAIN_STEPS = 60  # brief training makes next-token predictions confident, as in real models
ARCHS = ("gptneox", "gemma2")

# One thread for torch and llama.cpp: with two, a busy 2-core box slows these tiny models down
# 10-20x (thread pools spin-wait for a core).
torch.set_num_threads(1)
THREADS = 1


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """GPT-NeoX (F32, one file, transformers-5 rotary config) and Gemma-2 (BF16, sharded)."""
    root = tmp_path_factory.mktemp("checkpoints")
    neox, gemma = root / "gptneox", root / "gemma2"
    qb.train_bpe_tokenizer(neox)
    qb.save_gptneox(neox, 1024, train_steps=TRAIN_STEPS)
    qb.train_spm_tokenizer(gemma)
    qb.save_gemma2(gemma, 640, train_steps=TRAIN_STEPS)
    return {"gptneox": neox, "gemma2": gemma}


@pytest.fixture(scope="session")
def gguf(
    checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str, str], Path]:
    """``gguf(arch, type)``: the checkpoint converted to that type (built on first use)."""
    root, cache = tmp_path_factory.mktemp("gguf"), {}

    def get(arch: str, qtype: str) -> Path:
        if (arch, qtype) not in cache:
            out = root / f"{arch}.{qtype}.gguf"
            quantize_checkpoint(checkpoints[arch], out, qtype, hash_sources=False, threads=THREADS)
            cache[arch, qtype] = out
        return cache[arch, qtype]

    return get


@pytest.fixture(scope="session")
def hf_runs(
    checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], list[ProbeRun]]:
    """``hf_runs(arch)``: the shipped probes through transformers (float32), once per arch."""
    root, cache = tmp_path_factory.mktemp("hf_runs"), {}

    def get(arch: str) -> list[ProbeRun]:
        if arch not in cache:
            out = root / arch
            out.mkdir()
            cache[arch] = run_probes(TransformersLM(checkpoints[arch]), load_probes(), out)
        return cache[arch]

    return get


@pytest.fixture(scope="session")
def versus_hf(
    gguf: Callable[[str, str], Path],
    hf_runs: Callable[[str], list[ProbeRun]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str, str], VerifyReport]:
    """``versus_hf(arch, type)``: that GGUF compared with transformers on the shipped probes."""
    root, cache = tmp_path_factory.mktemp("versus_hf"), {}

    def get(arch: str, qtype: str) -> VerifyReport:
        if (arch, qtype) not in cache:
            ref, probes = hf_runs(arch), load_probes()
            forced = [r.tokens for r in ref]
            out = root / f"{arch}.{qtype}"
            cand = evaluate_gguf(gguf(arch, qtype), probes, forced, out, threads=THREADS)
            comparisons, scale = compare_runs(probes, ref, cand)
            cache[arch, qtype] = VerifyReport(
                str(gguf(arch, qtype)), qtype, "transformers", comparisons, 0.9, scale
            )
        return cache[arch, qtype]

    return get


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[[list[str]], tuple[int, str, str]]:
    """``cli(args)`` runs ``c2s-quantize`` in-process (adding ``--threads``):
    (exit code, stdout, stderr)."""

    def run(args: list[str]) -> tuple[int, str, str]:
        code = 0
        try:
            main(args if args[:1] == ["info"] else [*args, "--threads", str(THREADS)])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
