"""The suite runs with every connection beyond the loopback interface refused."""

from __future__ import annotations

import socket

import pytest


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
