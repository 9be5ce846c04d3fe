"""LocalEngine (llama-cpp-python in-process) against transformers on the same tiny checkpoints."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from c2s_desktop.core.engine.base import Engine, GenerateParams
from c2s_desktop.core.engine.local import LocalEngine, backend
from c2s_desktop.core.errors import Cancelled
from tests.helpers import transformers_logprob

from .conftest import ARCHS, OPTIONS

Prompt = tuple[str, tuple[str, ...]]


@pytest.fixture(scope="module")
def engines(gguf: Callable[[str, str], Path]) -> Any:
    """``engines(arch, type)``: one LocalEngine per file for this module."""
    cache: dict[tuple[str, str], LocalEngine] = {}

    def get(arch: str, qtype: str = "f32") -> LocalEngine:
        if (arch, qtype) not in cache:
            cache[arch, qtype] = LocalEngine(gguf(arch, qtype), OPTIONS)
        return cache[arch, qtype]

    yield get
    for engine in cache.values():
        engine.close()


@pytest.mark.parametrize("qtype", ["f32", "f16"])
@pytest.mark.parametrize("arch", ARCHS)
def test_scores_match_transformers(
    engines: Any, hf: Any, prompt: Prompt, arch: str, qtype: str
) -> None:
    text, conts = prompt
    # ' B cell.' etc. (multi-token, with commas) plus a continuation that merges with the
    # prompt's last token (no leading space), which takes the common-token-prefix path.
    cases = [(text, c) for c in conts] + [(text[:-1], ": B cell.")]
    ours = [engines(arch, qtype).score(p, [c])[0] for p, c in cases]
    ref = [transformers_logprob(*hf(arch), p, c) for p, c in cases]
    diff = max(abs(s.logprob - r) for s, r in zip(ours, ref, strict=True))
    scale = float(np.mean(np.abs(ref)))
    print(f"\n{arch} {qtype}: max |llama.cpp - HF| = {diff:.5f} nats; mean |logprob| = {scale:.2f}")
    assert diff < (0.01 if qtype == "f32" else 0.02)
    assert all(s.n_tokens > 1 for s in ours[:2])  # the CD4/CD8 labels are multi-token


@pytest.mark.parametrize("arch", ARCHS)
def test_prefix_reuse_equals_fresh_evaluation(
    engines: Any, gguf: Callable[[str, str], Path], prompt: Prompt, arch: str
) -> None:
    text, conts = prompt
    engine = engines(arch)
    engine.score("Cell sentence: MALAT1", [" B cell."])  # leaves unrelated tokens cached
    reused = engine.score(text, conts) + engine.score(text, conts[:2])
    fresh = []
    for cont in conts + conts[:2]:
        with LocalEngine(gguf(arch, "f32"), OPTIONS) as new:
            fresh.append(new.score(text, [cont])[0])
    assert [s.n_tokens for s in reused] == [s.n_tokens for s in fresh]
    np.testing.assert_allclose([s.logprob for s in reused], [s.logprob for s in fresh], atol=1e-4)


def test_tokenize_follows_the_bos_rule(engines: Any) -> None:
    assert engines("gemma2").tokenize("B cell")[0] == 2  # <bos> added by llama.cpp
    assert engines("gptneox").tokenize("B cell")[0] != 0  # no BOS for GPT-NeoX
    assert isinstance(engines("gptneox"), Engine)
    assert backend() in ("cpu", "CUDA", "Metal", "Vulkan", "ROCm", "HIP", "SYCL", "gpu")


@pytest.mark.parametrize("arch", ARCHS)
def test_generate_streams_greedy_and_deterministic(engines: Any, prompt: Prompt, arch: str) -> None:
    engine, text = engines(arch), prompt[0]
    pieces: list[str] = []
    first = engine.generate(text, GenerateParams(max_tokens=12), on_token=pieces.append)
    again = engine.generate(text, GenerateParams(max_tokens=12, seed=123))
    assert "".join(pieces) == first.text and len(pieces) > 1
    assert again.text == first.text
    assert (first.finish_reason, first.n_tokens) == ("length", 12)
    assert first.n_prompt_tokens == len(engine.tokenize(text))


def test_generate_with_seeded_sampling_is_reproducible(engines: Any, prompt: Prompt) -> None:
    params = GenerateParams(max_tokens=16, temperature=1.0, top_k=0, top_p=1.0, seed=7)
    runs = [engines("gptneox").generate(prompt[0], params).text for _ in range(2)]
    assert runs[0] == runs[1]


def test_stop_string_cuts_the_answer(engines: Any, prompt: Prompt) -> None:
    engine, text = engines("gptneox"), prompt[0]
    full = engine.generate(text, GenerateParams(max_tokens=12)).text
    stop = full.strip()[4:7]  # a string inside the greedy answer
    pieces: list[str] = []
    cut = engine.generate(text, GenerateParams(max_tokens=12, stop=(stop,)), pieces.append)
    assert cut.finish_reason == "stop" and stop not in cut.text
    assert full.startswith(cut.text) and full[len(cut.text) :].startswith(stop)
    assert "".join(pieces) == cut.text


@pytest.mark.timing
def test_cancel_from_another_thread(engines: Any, prompt: Prompt) -> None:
    engine, cancel = engines("gptneox"), threading.Event()
    threading.Timer(0.3, cancel.set).start()
    gen = engine.generate(
        prompt[0], GenerateParams(max_tokens=300), lambda _: time.sleep(0.01), cancel
    )
    latency = gen.seconds - 0.3
    print(f"\ncancel latency (in-process): {latency * 1000:.0f} ms")
    assert gen.finish_reason == "cancelled" and 0 < gen.n_tokens < 300
    assert latency < 1.0
    with pytest.raises(Cancelled):
        engine.score(prompt[0], prompt[1], cancel)


@pytest.mark.parametrize("arch", ARCHS)
def test_embed_is_mean_pooled_final_hidden_state(
    engines: Any, hf: Any, prompt: Prompt, arch: str
) -> None:
    texts = [prompt[0], "B cell", prompt[0]]
    seen: list[float] = []
    vectors = engines(arch).embed(texts, progress=lambda f, _: seen.append(f))
    assert vectors.shape == (3, 256) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all() and np.array_equal(vectors[0], vectors[2])
    assert seen[-1] == 1.0
    tok, model = hf(arch)
    with torch.no_grad():
        hidden = model.base_model(torch.tensor([tok(texts[1])["input_ids"]])).last_hidden_state
    np.testing.assert_allclose(vectors[1], hidden[0].mean(0).numpy(), rtol=1e-3, atol=1e-3)
