"""vLLM's OpenAI-compatible server on loopback, from its own venv (``make test-server`` builds
``.venv-vllm`` and names its Python in ``$C2S_VLLM_PYTHON``): the peer of the remote-engine
suite in ``tests/server`` and of ``bench/remote.py``."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

import httpx

from tests.engine.llama_server import free_port

PYTHON_ENV = "C2S_VLLM_PYTHON"
MAX_MODEL_LEN = 512  # the tiny test checkpoints' max_position_embeddings


def vllm_python() -> str | None:
    """The vLLM venv's Python, or None when ``$C2S_VLLM_PYTHON`` is unset or missing."""
    path = os.environ.get(PYTHON_ENV, "")
    return path if path and Path(path).is_file() else None


class VllmServer:
    """A started server: its address, the served model name and its API key (or None)."""

    def __init__(
        self, proc: subprocess.Popen, log: IO[bytes], url: str, name: str, key: str | None
    ):
        self.proc, self.log, self.url, self.name, self.api_key = proc, log, url, name, key
        self.started_at = time.monotonic()
        self.ready_s = 0.0

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def log_tail(self, n: int = 3000) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-n:]

    def wait_ready(self, deadline: float) -> None:
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"vLLM did not start ({self.proc.returncode}):\n{self.log_tail()}"
                )
            try:
                r = httpx.get(f"{self.url}/v1/models", headers=self.headers(), timeout=2)
                if r.status_code == 200:
                    self.ready_s = time.monotonic() - self.started_at
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start(
    python: str,
    model: Path,
    name: str,
    api_key: str | None = None,
    extra: tuple[str, ...] = (),
) -> VllmServer:
    """Start (not wait for) ``vllm.entrypoints.openai.api_server`` serving ``model`` (a
    Hugging Face folder) in fp32 on a free loopback port."""
    port = free_port()
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model)]
    cmd += ["--served-model-name", name, "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--dtype", "float32", "--max-model-len", str(MAX_MODEL_LEN)]
    cmd += ["--enforce-eager", "--disable-log-stats", "--uvicorn-log-level", "warning"]
    if api_key:
        cmd += ["--api-key", api_key]
    cmd += list(extra)
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by the caller's stop)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    return VllmServer(proc, log, f"http://127.0.0.1:{port}", name, api_key)


@contextmanager
def vllm_servers(
    python: str, specs: dict[str, tuple[Path, str | None]], ready_s: float = 900.0
) -> Iterator[dict[str, VllmServer]]:
    """Servers for ``{name: (model folder, api key)}``, started together; stopped on exit."""
    with ExitStack() as stack:
        servers = {}
        for name, (model, key) in specs.items():
            server = start(python, model, name, key)
            stack.callback(server.log.close)
            stack.callback(server.stop)
            servers[name] = server
        deadline = time.monotonic() + ready_s
        for server in servers.values():
            server.wait_ready(deadline)
        yield servers
