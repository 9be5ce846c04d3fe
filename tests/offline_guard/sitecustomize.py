"""Refuse every network connection beyond the loopback interface in this Python process.

The test suite loads it in-process (tests/conftest.py) and puts this folder on ``PYTHONPATH``,
so Python subprocesses (the ``c2s`` CLI run as a command, the spawned model process) import it
as ``sitecustomize`` at startup and are guarded too.
"""

from __future__ import annotations

import ipaddress
import socket

BLOCKED = "network access is blocked in the test suite"
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _is_local(host: object) -> bool:
    if host in ("localhost", "", None) or isinstance(host, bytes | int):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _check(sock: socket.socket, address: object) -> None:
    if sock.family == getattr(socket, "AF_UNIX", None):
        return
    host = address[0] if isinstance(address, tuple) else address
    if not _is_local(host):
        raise OSError(f"{BLOCKED} (tried {address!r})")


def _guarded_connect(self: socket.socket, address: object) -> None:
    _check(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _check(self, address)
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
    if not _is_local(host.decode() if isinstance(host, bytes) else host):
        raise socket.gaierror(f"name resolution is blocked in the test suite ({host!r})")
    return _real_getaddrinfo(host, *args, **kwargs)


def install() -> None:
    """Patch ``socket`` (idempotent)."""
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = _guarded_getaddrinfo


install()
