"""The suite runs with every connection beyond the loopback interface refused, in this process
and in Python subprocesses; only the explicit model download may import network code."""

from __future__ import annotations

import ast
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NETWORK_MODULES = ("socket", "urllib.request", "http.client", "requests", "httpx", "aiohttp")
NETWORK_PACKAGES = ("huggingface_hub", "PySide6.QtNetwork", "websocket")
# The explicit model download (c2s-quantize's hub module, the model store's download that calls
# it) and the remote-engine client (the user gives it a server URL).
ALLOWED = {
    "quantize/c2s_quantize/hub.py",
    "c2s_desktop/core/model_store.py",
    "c2s_desktop/core/engine/remote.py",
}


def test_external_connections_are_refused():
    with socket.socket() as s, pytest.raises(OSError, match="blocked"):
        s.connect(("192.0.2.1", 443))  # TEST-NET-1: never routed
    with pytest.raises(OSError, match="blocked"):
        socket.getaddrinfo("example.org", 443)


def test_loopback_still_works():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.socket() as client:
            client.connect(server.getsockname())


def test_subprocesses_are_guarded_too():
    code = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('192.0.2.1', 443), timeout=5)\n"
        "except OSError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "blocked" in done.stdout, done.stdout + done.stderr


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_only_the_download_imports_network_code():
    offenders = []
    for path in sorted([*ROOT.glob("c2s_desktop/**/*.py"), *ROOT.glob("quantize/**/*.py")]):
        rel = path.relative_to(ROOT).as_posix()
        if rel in ALLOWED:
            continue
        for name in _imports(path):
            if name in NETWORK_MODULES or name.startswith(NETWORK_PACKAGES):
                offenders.append(f"{rel}: {name}")
    assert not offenders, "network code outside the explicit download:\n" + "\n".join(offenders)
