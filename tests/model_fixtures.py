"""Session fixtures shared by every test folder: the tiny trained checkpoints (built once per
run with the c2s-quantize test builders), their GGUF conversions (built on first use) and their
transformers models (loaded once)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("GGML_NO_BACKTRACE", "1")  # no gdb backtrace if llama.cpp aborts

ARCHS = ("gptneox", "gemma2")
TRAIN_STEPS = 60  # brief training makes next-token predictions confident, as in real models
# One thread for torch and llama.cpp: with two, a busy 2-core box slows these tiny models down
# 10-20x (thread pools spin-wait for a core).
THREADS = 1


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """GPT-NeoX (F32, one file, byte-level BPE, no BOS) and Gemma-2 (BF16, sharded,
    SentencePiece with BOS), briefly trained."""
    import torch

    from tests.quantize import quantize_builders as qb

    torch.set_num_threads(THREADS)
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
    from c2s_quantize.pipeline import quantize_checkpoint

    root, cache = tmp_path_factory.mktemp("gguf"), {}

    def get(arch: str, qtype: str) -> Path:
        if (arch, qtype) not in cache:
            out = root / f"{arch}.{qtype}.gguf"
            quantize_checkpoint(checkpoints[arch], out, qtype, hash_sources=False, threads=THREADS)
            cache[arch, qtype] = out
        return cache[arch, qtype]

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
