"""Session fixtures for the c2s-quantize tests: the transformers reference evaluated once per
architecture (the checkpoints and GGUFs come from ``tests/model_fixtures.py``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("GGML_NO_BACKTRACE", "1")  # no gdb backtrace if llama.cpp aborts

import torch  # noqa: E402

from c2s_quantize.cli import main  # noqa: E402
from c2s_quantize.evaluate import ProbeRun, run_probes  # noqa: E402
from c2s_quantize.hf_lm import TransformersLM  # noqa: E402
from c2s_quantize.probes import load_probes  # noqa: E402
from c2s_quantize.verify import VerifyReport, compare_runs, evaluate_gguf  # noqa: E402
from tests.model_fixtures import ARCHS, THREADS  # noqa: E402, F401

torch.set_num_threads(THREADS)


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
