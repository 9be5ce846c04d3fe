"""ProcessEngine: the model in a child process; crashes, cancel and restart."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from c2s_desktop.core.engine.base import (
    EngineCrashed,
    EngineOptions,
    GenerateParams,
    ModelFileError,
)
from c2s_desktop.core.engine.local import LocalEngine
from c2s_desktop.core.engine.process import ProcessEngine
from c2s_desktop.core.errors import Cancelled

from .conftest import OPTIONS

Prompt = tuple[str, tuple[str, ...]]
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture(scope="module")
def engine(gguf: Callable[[str, str], Path]) -> Iterator[ProcessEngine]:
    with ProcessEngine(gguf("gptneox", "f32"), OPTIONS) as served:
        yield served


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def test_same_results_as_in_process(
    engine: ProcessEngine, gguf: Callable[[str, str], Path], prompt: Prompt
) -> None:
    text, conts = prompt
    pieces: list[str] = []
    params = GenerateParams(max_tokens=10)
    with LocalEngine(gguf("gptneox", "f32"), OPTIONS) as local:
        assert engine.tokenize(text) == local.tokenize(text)
        assert engine.score(text, conts) == local.score(text, conts)
        gen = engine.generate(text, params, on_token=pieces.append)
        assert gen.text == local.generate(text, params).text == "".join(pieces)
        np.testing.assert_array_equal(engine.embed([text]), local.embed([text]))
    assert engine.info.architecture == "gptneox"


@pytest.mark.timing
def test_cancel_reaches_the_child_within_a_second(
    gguf: Callable[[str, str], Path], prompt: Prompt
) -> None:
    # A context far beyond the tiny model's makes generation long enough (~8 s) to cancel.
    with ProcessEngine(gguf("gptneox", "f32"), EngineOptions(n_ctx=8192, threads=1)) as long:
        cancel = threading.Event()
        threading.Timer(0.5, cancel.set).start()
        start = time.perf_counter()
        params = GenerateParams(max_tokens=8000, temperature=1.0, seed=1)
        gen = long.generate("Cell sentence: MALAT1", params, cancel=cancel)
        latency = time.perf_counter() - start - 0.5
        print(f"\ncancel latency (model process): {latency * 1000:.0f} ms")
        assert gen.finish_reason == "cancelled" and gen.n_tokens < 8000
        assert latency < 2.0
        with pytest.raises(Cancelled):
            long.score(prompt[0], prompt[1], cancel)
        assert long.score(prompt[0], prompt[1][:1])[0].n_tokens > 1  # usable afterwards


def test_failing_callback_propagates_and_engine_stays_usable(
    engine: ProcessEngine, prompt: Prompt
) -> None:
    def explode(_: str) -> None:
        raise RuntimeError("GUI went away")

    with pytest.raises(RuntimeError, match="GUI went away"):
        engine.generate(prompt[0], GenerateParams(max_tokens=50), on_token=explode)
    assert engine.generate(prompt[0], GenerateParams(max_tokens=3)).n_tokens == 3


@posix_only
def test_native_abort_becomes_engine_crashed(
    patched: Callable[..., Path], gguf: Callable[[str, str], Path], prompt: Prompt
) -> None:
    bad = patched("gptneox.rope.dimension_count", 200)  # loads, then GGML_ASSERT at decode
    with ProcessEngine(bad, OPTIONS, validate=False) as crashing:
        with pytest.raises(EngineCrashed) as caught:
            crashing.score(*prompt)
        message = str(caught.value)
        assert "SIGABRT" in message and "GGML_ASSERT" in message and str(bad) in message
        with pytest.raises(EngineCrashed, match="not running"):
            crashing.tokenize("B cell")
        crashing.restart()
        assert crashing.tokenize("B cell")  # a fresh child, alive until the next decode
    with ProcessEngine(gguf("gptneox", "f32"), OPTIONS) as good:
        before = good.score(*prompt)
        good.restart()
        assert good.score(*prompt) == before


@posix_only
def test_killed_child_becomes_engine_crashed(engine: ProcessEngine, prompt: Prompt) -> None:
    pid = engine.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # what the OOM killer does
    with pytest.raises(EngineCrashed, match="SIGKILL"):
        engine.score(*prompt)
    engine.restart()
    assert engine.pid != pid and engine.score(*prompt)[0].n_tokens > 0


def test_file_is_validated_before_spawning(
    gguf: Callable[[str, str], Path], patched: Callable[..., Path], tmp_path: Path
) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(gguf("gptneox", "f32").read_bytes()[:4096])
    with pytest.raises(ModelFileError, match="truncated"):
        ProcessEngine(cut, OPTIONS)
    # Unvalidated, llama.cpp itself refuses missing layers at load; the child reports it.
    with pytest.raises(ModelFileError, match="cannot load"):
        ProcessEngine(patched("gptneox.block_count", 3), OPTIONS, validate=False)


@posix_only
def test_close_ends_the_child(gguf: Callable[[str, str], Path]) -> None:
    with ProcessEngine(gguf("gptneox", "q8_0"), OPTIONS) as served:
        pid = served.pid
        assert pid is not None and _alive(pid)
    assert served.pid is None and not _alive(pid)
