"""Shared fixtures: small real and generated .h5ad files."""

from __future__ import annotations

import atexit
import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("GGML_NO_BACKTRACE", "1")

DATA_DIR = Path(__file__).parent / "data"

# The tiny trained checkpoints and their GGUFs, built once per run for every test folder.
pytest_plugins = ["tests.model_fixtures"]


# -- offline guarantee: no test may reach beyond the loopback interface ---------------------------
# In this process, and in Python subprocesses (CLI commands, the spawned model process), which
# import the guard as ``sitecustomize`` from PYTHONPATH.
GUARD_DIR = Path(__file__).parent / "offline_guard"
_spec = importlib.util.spec_from_file_location("c2s_offline_guard", GUARD_DIR / "sitecustomize.py")
assert _spec is not None and _spec.loader is not None
offline_guard = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(offline_guard)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(GUARD_DIR), os.environ.get("PYTHONPATH", "")) if p
)

# -- the audit and error logs go to a throw-away folder (also for CLI subprocesses) ---------------
AUDIT_DIR = Path(tempfile.mkdtemp(prefix="c2s-test-audit-"))
atexit.register(shutil.rmtree, AUDIT_DIR, True)
os.environ["C2S_AUDIT_LOG"] = str(AUDIT_DIR / "suite.jsonl")
os.environ["C2S_LOG_DIR"] = str(AUDIT_DIR / "logs")  # tracebacks of damaged test inputs
os.environ["C2S_CACHE_DIR"] = str(AUDIT_DIR / "cache")  # files already checked for HDF5 hangs
os.environ["C2S_CHECKPOINT_DIR"] = str(AUDIT_DIR / "checkpoints")  # interrupted annotations


@pytest.fixture(autouse=True)
def audit_log(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Path:
    """This test's own audit log file (``C2S_AUDIT_LOG``), empty at the start."""
    name = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:16]
    path = AUDIT_DIR / f"{name}.jsonl"
    path.unlink(missing_ok=True)
    monkeypatch.setenv("C2S_AUDIT_LOG", str(path))
    return path


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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files that hold a ``slow`` test first, then the others by their number of tests: the
    order in which ``make test``'s workers take files (``--no-loadscope-reorder``), so that no
    worker starts a long file while the other has nothing left. Tests keep their order within
    a file."""
    by_file: dict[str, list[pytest.Item]] = {}
    for item in items:
        by_file.setdefault(item.nodeid.split("::")[0], []).append(item)
    slow = {f for f, tests in by_file.items() if any(t.get_closest_marker("slow") for t in tests)}
    order = sorted(by_file, key=lambda f: (f not in slow, -len(by_file[f])))
    items[:] = [item for f in order for item in by_file[f]]
