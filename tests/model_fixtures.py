"""Session fixtures shared by every test folder: the tiny trained checkpoints (built once per
run with the c2s-quantize test builders), their GGUF conversions (built on first use) and their
transformers models (loaded once per process).

Under pytest-xdist the workers share one build: the first worker to need a checkpoint or a GGUF
builds it in the run's common temporary folder under a file lock; the others wait and reuse it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

os.environ.setdefault("GGML_NO_BACKTRACE", "1")  # no gdb backtrace if llama.cpp aborts

ARCHS = ("gptneox", "gemma2")
TRAIN_STEPS = 60  # brief training makes next-token predictions confident, as in real models
# One thread for torch and llama.cpp: with two, a busy 2-core box slows these tiny models down
# 10-20x (thread pools spin-wait for a core).
THREADS = 1


def shared_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder every xdist worker of this run sees (a worker's own base folder lies in the
    run's folder); ``C2S_TEST_SHARED`` names one that outlives the run (``make test`` hands its
    two pytest runs one); else one in the run's base folder."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    root = Path(os.environ.get("C2S_TEST_SHARED") or root)
    path = root / f"shared-{name}"
    path.mkdir(exist_ok=True)
    return path


def build_once(folder: Path, build: Callable[[], None]) -> Path:
    """Run ``build`` (which fills ``folder``) once per run across workers: under a lock, and
    marked done only when it returned."""
    with FileLock(str(folder) + ".lock"):
        if not (folder / ".done").exists():
            folder.mkdir(parents=True, exist_ok=True)
            build()
            (folder / ".done").touch()
    return folder


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """GPT-NeoX (F32, one file, byte-level BPE, no BOS) and Gemma-2 (BF16, sharded,
    SentencePiece with BOS), briefly trained."""
    import torch

    from tests.quantize import quantize_builders as qb

    torch.set_num_threads(THREADS)
    root = shared_dir(tmp_path_factory, "checkpoints")
    neox, gemma = root / "gptneox", root / "gemma2"

    def build() -> None:
        qb.train_bpe_tokenizer(neox)
        qb.save_gptneox(neox, 1024, train_steps=TRAIN_STEPS)
        qb.train_spm_tokenizer(gemma)
        qb.save_gemma2(gemma, 640, train_steps=TRAIN_STEPS)

    build_once(root, build)
    return {"gptneox": neox, "gemma2": gemma}


@pytest.fixture(scope="session")
def gguf(
    checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str, str], Path]:
    """``gguf(arch, type)``: the checkpoint converted to that type (built on first use)."""
    from c2s_quantize.pipeline import quantize_checkpoint

    root = shared_dir(tmp_path_factory, "gguf")

    def get(arch: str, qtype: str) -> Path:
        folder = root / f"{arch}.{qtype}"
        out = folder / f"{arch}.{qtype}.gguf"
        build_once(
            folder,
            lambda: quantize_checkpoint(
                checkpoints[arch], out, qtype, hash_sources=False, threads=THREADS
            ),
        )
        return out

    return get


@pytest.fixture(scope="session")
def hf(checkpoints: dict[str, Path]) -> Callable[[str], tuple[Any, Any]]:
    """``hf(arch)``: (tokenizer, float32 transformers model) of the checkpoint, loaded once."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache: dict[str, tuple[Any, Any]] = {}

    def get(arch: str) -> tuple[Any, Any]:
        if arch not in cache:
            model = AutoModelForCausalLM.from_pretrained(checkpoints[arch], dtype=torch.float32)
            cache[arch] = AutoTokenizer.from_pretrained(checkpoints[arch]), model.eval()
        return cache[arch]

    return get
