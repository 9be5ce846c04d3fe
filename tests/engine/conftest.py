"""Session fixtures for the engine tests: tiny trained GPT-NeoX and Gemma-2 checkpoints (built
with the c2s-quantize test builders), converted to GGUF once, and prompts their tokenizers know."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("GGML_NO_BACKTRACE", "1")  # no gdb backtrace if llama.cpp aborts

import torch  # noqa: E402

from c2s_desktop.core.engine.base import EngineOptions  # noqa: E402
from c2s_quantize import quantize_checkpoint  # noqa: E402
from c2s_quantize.probes import load_probes  # noqa: E402
from tests.quantize import quantize_builders as qb  # noqa: E402

ARCHS = ("gptneox", "gemma2")
TRAIN_STEPS = 60
# One thread: on a busy 2-core box thread pools spin-wait and slow tiny models down 10-20x.
torch.set_num_threads(1)
OPTIONS = EngineOptions(n_ctx=512, threads=1)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """GPT-NeoX + byte-level BPE (no BOS) and Gemma-2 + SentencePiece (BOS), briefly trained."""
    root = tmp_path_factory.mktemp("engine_checkpoints")
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
    root, cache = tmp_path_factory.mktemp("engine_gguf"), {}

    def get(arch: str, qtype: str) -> Path:
        if (arch, qtype) not in cache:
            out = root / f"{arch}.{qtype}.gguf"
            quantize_checkpoint(checkpoints[arch], out, qtype, hash_sources=False, threads=1)
            cache[arch, qtype] = out
        return cache[arch, qtype]

    return get


@pytest.fixture(scope="session")
def prompt() -> tuple[str, tuple[str, ...]]:
    """A shipped probe prompt and its candidate continuations (' <label>.', some multi-token
    with commas), text the tiny tokenizers were trained on."""
    probe = load_probes()[0]
    return probe.text, tuple(probe.continuation(label) for label in probe.labels)


@pytest.fixture
def patched(gguf: Callable[[str, str], Path], tmp_path: Path) -> Callable[..., Path]:
    """``patched(key, value, arch=...)``: a copy of the F32 GGUF with one metadata value
    rewritten in place (numbers, or strings of the same byte length)."""

    def make(key: str, value: int | str, arch: str = "gptneox") -> Path:
        import numpy as np
        from gguf import GGUFReader

        out = tmp_path / f"{key}.gguf"
        shutil.copy(gguf(arch, "f32"), out)
        reader = GGUFReader(out, "r+")
        part = reader.fields[key].parts[reader.fields[key].data[0]]
        part[:] = np.frombuffer(value.encode(), np.uint8) if isinstance(value, str) else value
        reader.data.flush()
        del reader
        return out

    return make


@pytest.fixture(scope="session")
def hf(checkpoints: dict[str, Path]) -> Callable[[str], tuple[Any, Any]]:
    """``hf(arch)``: (tokenizer, float32 transformers model) of the checkpoint, loaded once."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache: dict[str, tuple[Any, Any]] = {}

    def get(arch: str) -> tuple[Any, Any]:
        if arch not in cache:
            model = AutoModelForCausalLM.from_pretrained(checkpoints[arch], dtype=torch.float32)
            cache[arch] = AutoTokenizer.from_pretrained(checkpoints[arch]), model.eval()
        return cache[arch]

    return get
