"""A model that aborts llama.cpp, and a model too large for memory, leave the caller alive with
a clear message; the engine (or a fresh one) works afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from c2s_desktop.core.engine.base import (
    EngineCrashed,
    EngineError,
    EngineOptions,
    NotEnoughMemory,
)
from c2s_desktop.core.engine.process import (
    SKIP_MEMORY_CHECK_ENV,
    ProcessEngine,
    available_memory,
    check_memory,
    estimate_memory,
)
from c2s_desktop.core.models import validate_gguf
from tests.badinput.corpus import DATA, MODEL, patch_gguf

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and rlimits")
SMALL = EngineOptions(n_ctx=256, threads=1)
PROMPT = "The cell type of this cell is"
LABELS = (" B cell.", " T cell.")


def _huge_context() -> int:
    """A context whose cache alone needs ~64 GB (more than this machine has)."""
    info = validate_gguf(MODEL)
    return int(64 * 1024**3 / (4 * info.n_layer * info.n_embd))


@posix_only
def test_aborting_model_becomes_engine_crashed_and_restart_works(tmp_path):
    bad = patch_gguf(
        tmp_path, "rope.gguf", f"{validate_gguf(MODEL).architecture}.rope.dimension_count", 4096
    )
    with ProcessEngine(bad, SMALL, validate=False) as crashing:
        with pytest.raises(EngineCrashed) as caught:
            crashing.score(PROMPT, LABELS)
        message = caught.value.one_line()
        assert "SIGABRT" in message and str(bad) in message and "restart" in message
        crashing.restart()  # a fresh child: loads, dies again at the first decode
        assert crashing.pid is not None
    with ProcessEngine(MODEL, SMALL) as good:  # this process is fine
        assert good.score(PROMPT, LABELS)[0].n_tokens > 0


@posix_only
def test_cli_reports_a_dying_model_process(tmp_path):
    """``c2s annotate`` whose model process dies (as if llama.cpp aborted): exit 2, one line."""
    out = tmp_path / "a.h5ad"
    script = Path(sys.executable).parent / "c2s"
    proc = subprocess.Popen(
        [
            str(script),
            "annotate",
            str(DATA),
            "--model",
            str(MODEL),
            "-o",
            str(out),
            "--candidates-from",
            "cell_type",
            "--mode",
            "per-cell",
            "--threads",
            "1",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    child = _wait_for_model_process(proc.pid)
    time.sleep(1.0)  # let it score a few cells
    os.kill(child, signal.SIGABRT)
    _, err = proc.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert proc.returncode == 2, err
    assert lines[-1].startswith("error: ") and "SIGABRT" in lines[-1] and str(MODEL) in lines[-1]
    assert "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".*.part"))


def _wait_for_model_process(parent: int, timeout: float = 120) -> int:
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in psutil.Process(parent).children(recursive=True):
            try:
                if "spawn_main" in " ".join(c.cmdline()):
                    return c.pid
            except psutil.Error:
                continue
        time.sleep(0.1)
    raise AssertionError("the model process never started")


def test_preflight_refuses_a_model_too_large_for_memory():
    if available_memory() is None:
        pytest.skip("this platform does not report available memory")
    n_ctx = _huge_context()
    start = time.perf_counter()
    with pytest.raises(NotEnoughMemory) as caught:
        ProcessEngine(MODEL, EngineOptions(n_ctx=n_ctx, threads=1))
    assert time.perf_counter() - start < 5  # refused before any process starts
    message = caught.value.one_line()
    assert "GB of memory" in message and "available" in message and f"{n_ctx:,} tokens" in message
    assert "smaller quantization" in message and "smaller context" in message
    assert str(MODEL) in message


def test_preflight_override(monkeypatch):
    info = validate_gguf(MODEL)
    huge = EngineOptions(n_ctx=_huge_context())
    weights, context = estimate_memory(info, huge)
    assert weights == info.size_bytes and context > 60 * 1024**3
    check_memory(info, EngineOptions(n_ctx=huge.n_ctx, check_memory=False))
    monkeypatch.setenv(SKIP_MEMORY_CHECK_ENV, "1")
    check_memory(info, huge)
    monkeypatch.setenv(SKIP_MEMORY_CHECK_ENV, "0")
    if available_memory() is not None:
        with pytest.raises(NotEnoughMemory):
            check_memory(info, huge)


@posix_only
def test_memory_limit_makes_loading_fail_cleanly_and_a_fresh_engine_works():
    options = EngineOptions(
        n_ctx=_huge_context(), threads=1, memory_limit_bytes=4 * 1024**3, check_memory=False
    )
    with pytest.raises(EngineError) as caught:
        ProcessEngine(MODEL, options)
    message = caught.value.one_line()
    assert isinstance(caught.value, NotEnoughMemory | EngineCrashed), message
    assert "memory limit" in message and "4.00 GB" in message, message
    with ProcessEngine(
        MODEL, EngineOptions(n_ctx=256, threads=1, memory_limit_bytes=8 * 1024**3)
    ) as ok:
        assert ok.score(PROMPT, LABELS)[0].n_tokens > 0  # a workable limit changes nothing
