"""llama-cpp-python's OpenAI-compatible server on loopback, as a peer for the remote engine
(tests and ``bench/remote.py``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

_START = (
    "from c2s_desktop.core.engine.cpu_variants import ensure_loaded; ensure_loaded(); "
    "import runpy; runpy.run_module('llama_cpp.server', run_name='__main__')"
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def llama_server(
    model: str | Path,
    *,
    alias: str | None = None,
    api_key: str | None = None,
    n_ctx: int = 2048,
    threads: int = 1,
    embedding: bool = False,
    ready_s: float = 90.0,
) -> Iterator[str]:
    """``python -m llama_cpp.server`` on a free loopback port; yields its address once
    ``/v1/models`` answers; stopped on exit. Its output goes to a temporary log file that is
    shown when it fails to start."""
    port = free_port()
    # llama-cpp-python does not load llama.cpp's backend modules itself (the project's build
    # has them as loadable modules): load the checked CPU variant first, as the app does.
    cmd = [sys.executable, "-c", _START, "--model", str(model)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx)]
    cmd += ["--n_threads", str(threads), "--n_threads_batch", str(threads)]
    cmd += ["--logits_all", "true", "--embedding", "true" if embedding else "false"]
    cmd += ["--flash_attn", "true"]  # as the local engine by default: the same numerics
    if alias:
        cmd += ["--model_alias", alias]
    if api_key:
        cmd += ["--api_key", api_key]
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    env = {**os.environ, "GGML_NO_BACKTRACE": "1"}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            _wait_ready(proc, log, f"{url}/v1/models", headers, ready_s)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(
    proc: subprocess.Popen, log: IO[bytes], url: str, headers: dict[str, str], ready_s: float
) -> None:
    deadline = time.monotonic() + ready_s
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"llama_cpp.server did not start ({proc.returncode}):\n{tail}")
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
