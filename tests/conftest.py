"""Shared fixtures: small real and generated .h5ad files."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("GGML_NO_BACKTRACE", "1")

DATA_DIR = Path(__file__).parent / "data"


# -- offline guarantee: no test may reach beyond the loopback interface ---------------------------
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
        raise OSError(f"network access is blocked in the test suite (tried {address!r})")


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


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
socket.getaddrinfo = _guarded_getaddrinfo
REAL_H5AD = DATA_DIR / "pbmc_counts_small.h5ad"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_h5ad(
    path: Path,
    X,
    genes: list[str] | None = None,
    *,
    cells: list[str] | None = None,
    var: pd.DataFrame | None = None,
    obs: pd.DataFrame | None = None,
    **kwargs,
) -> Path:
    """Write an AnnData file; ``X`` dense or sparse, ``kwargs`` go to ``AnnData``."""
    n, g = X.shape
    if var is None:
        var = pd.DataFrame(index=genes or [f"GENE{i}" for i in range(g)])
    if obs is None:
        obs = pd.DataFrame(index=cells or [f"cell{i}" for i in range(n)])
    adata = ad.AnnData(X=X, obs=obs, var=var, **kwargs)
    adata.write_h5ad(path)
    return path


@pytest.fixture
def counts_matrix() -> sp.csr_matrix:
    rng = np.random.default_rng(7)
    dense = rng.poisson(0.6, size=(40, 25)).astype(np.float32)
    dense[3] = 0  # an all-zero cell
    return sp.csr_matrix(dense)


@pytest.fixture
def real_h5ad() -> Path:
    return REAL_H5AD
