"""Engine test fixtures: prompts the tiny tokenizers know and patched GGUF copies (the checkpoints
and GGUFs come from ``tests/model_fixtures.py``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("GGML_NO_BACKTRACE", "1")  # no gdb backtrace if llama.cpp aborts

import torch  # noqa: E402

from c2s_desktop.core.engine.base import EngineOptions  # noqa: E402
from c2s_quantize.probes import load_probes  # noqa: E402
from tests.model_fixtures import ARCHS  # noqa: E402, F401

# One thread: on a busy 2-core box thread pools spin-wait and slow tiny models down 10-20x.
torch.set_num_threads(1)
OPTIONS = EngineOptions(n_ctx=512, threads=1)


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
