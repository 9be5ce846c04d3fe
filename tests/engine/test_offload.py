"""GPU offload: a model that does not fit in GPU memory loads with fewer layers, with a note.

There is no GPU here, so the out-of-VRAM failure is forced: ``C2S_GPU_LAYERS_LIMIT`` makes a
load with more layers fail exactly as llama-cpp-python fails when VRAM runs out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from c2s_desktop.core.engine.local import GPU_LAYERS_LIMIT_ENV, LocalEngine, _offload_steps
from c2s_desktop.core.engine.process import ProcessEngine

from .conftest import OPTIONS


def test_offload_steps_halve_down_to_the_cpu():
    assert _offload_steps(0, 24) == [0]
    assert _offload_steps(-1, 24) == [-1, 12, 6, 3, 1, 0]
    assert _offload_steps(10, 24) == [10, 5, 2, 1, 0]


def test_out_of_vram_at_load_falls_back_to_fewer_layers_in_the_model_process(
    gguf: Callable[[str, str], Path], prompt: tuple[str, tuple[str, ...]], monkeypatch
):
    path = gguf("gptneox", "q8_0")
    text, labels = prompt
    with ProcessEngine(path, OPTIONS) as cpu:
        expected = cpu.score(text, labels)
        n_layer = cpu.info.n_layer
    assert n_layer >= 2
    monkeypatch.setenv(GPU_LAYERS_LIMIT_ENV, "1")
    with ProcessEngine(path, replace(OPTIONS, n_gpu_layers=-1)) as engine:
        assert engine.load_note == (
            "the model did not fit in GPU memory with all layers offloaded; "
            f"running 1 of {n_layer} layers on the GPU"
        )
        got = engine.score(text, labels)
    assert [s.n_tokens for s in got] == [s.n_tokens for s in expected]
    assert [s.logprob for s in got] == pytest.approx([s.logprob for s in expected], abs=1e-4)


def test_no_layer_fitting_runs_on_the_cpu(gguf: Callable[[str, str], Path], monkeypatch):
    monkeypatch.setenv(GPU_LAYERS_LIMIT_ENV, "0")
    with LocalEngine(gguf("gptneox", "q8_0"), replace(OPTIONS, n_gpu_layers=3)) as engine:
        assert engine.gpu_layers == 0
        assert engine.load_note.endswith("with 3 layers offloaded; running on the CPU")


def test_a_model_that_fits_has_no_note(gguf: Callable[[str, str], Path]):
    with LocalEngine(gguf("gptneox", "q8_0"), OPTIONS) as engine:
        assert (engine.gpu_layers, engine.load_note) == (0, "")
