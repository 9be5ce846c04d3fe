"""The remote-engine suite against a real vLLM (``make test-server``): the tiny trained
GPT-NeoX (no BOS) and Gemma-2 (BOS) checkpoints of the engine tests, served in fp32 by vLLM
and converted to GGUF for the local engine. Skipped when ``$C2S_VLLM_PYTHON`` is not set."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.conftest import prompt  # noqa: F401
from tests.model_fixtures import ARCHS  # noqa: F401

from .vllm_server import VllmServer, vllm_python, vllm_servers

KEY = "lab-secret-key"
NAMES = {"gptneox": "c2s-test/tiny-gptneox", "gemma2": "c2s-test/tiny-gemma2"}


@pytest.fixture(scope="session")
def servers(checkpoints: dict[str, Path]) -> Iterator[dict[str, VllmServer]]:  # noqa: F811
    """One vLLM per checkpoint, started together once: GPT-NeoX behind an API key."""
    python = vllm_python()
    assert python is not None
    specs = {arch: (checkpoints[arch], KEY if arch == "gptneox" else None) for arch in ARCHS}
    with vllm_servers(python, {NAMES[a]: spec for a, spec in specs.items()}) as started:
        by_arch = {arch: started[NAMES[arch]] for arch in ARCHS}
        for arch, server in by_arch.items():
            print(f"\nvLLM ({arch}) ready in {server.ready_s:.0f} s", file=sys.stderr)
        yield by_arch
