"""Fuzzing the .h5ad inspection: mutated bytes of a valid file give a description or a
C2SError (never another exception, never a hang)."""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given

from c2s_desktop.core.dataset import DatasetInfo, open_dataset
from c2s_desktop.core.sentence_writer import cell_sentences
from tests.conftest import write_h5ad

from .common import FUZZ, result_or_c2s_error
from .mutations import apply, ops

WORK = Path(tempfile.mkdtemp(prefix="c2s-fuzz-h5ad-"))
atexit.register(shutil.rmtree, WORK, True)


@functools.cache
def valid_h5ad() -> bytes:
    """A small but complete file: CSR counts, raw, a layer, categorical obs, an embedding."""
    rng = np.random.default_rng(3)
    X = sp.csr_matrix(rng.poisson(0.8, size=(24, 16)).astype(np.float32))
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(rng.choice(["B", "T", "NK"], 24))},
        index=[f"c{i}" for i in range(24)],
    )
    path = write_h5ad(
        WORK / "valid.h5ad",
        X,
        [f"GENE{i}" for i in range(16)],
        obs=obs,
        layers={"counts": X.copy()},
        obsm={"X_umap": rng.normal(size=(24, 2)).astype(np.float32)},
    )
    return path.read_bytes()


def inspect(path: Path) -> DatasetInfo:
    """What opening a file in the app or ``c2s info`` does, plus a few sentences."""
    with open_dataset(path) as ds:
        info = ds.info()
        cell_sentences(ds, np.arange(min(4, ds.n_cells)))
        for key in info.embeddings:
            ds.embedding(key)
        return info


def test_valid_file_opens():
    path = WORK / "check.h5ad"
    path.write_bytes(valid_h5ad())
    info = inspect(path)
    assert (info.n_cells, info.n_genes) == (24, 16)


SIZE = len(valid_h5ad())


@FUZZ
@given(mutations=ops(SIZE, focus=4096))
def test_mutated_h5ad_gives_result_or_clear_error(mutations):
    path = WORK / "mutated.h5ad"
    path.write_bytes(apply(valid_h5ad(), mutations))
    result_or_c2s_error(lambda: inspect(path))


HANG_SCRIPT = """
import sys
from c2s_desktop.core.dataset import open_dataset
from c2s_desktop.core.errors import C2SError
try:
    open_dataset(sys.argv[1]).close()
except C2SError:
    pass
"""


@pytest.mark.xfail(
    strict=True,
    reason="known: two flipped bytes in an attribute heap make the HDF5 library loop forever "
    "reading obs attributes (found by this fuzzer; not interruptible from Python)",
)
def test_known_hdf5_hang_reproducer():
    path = WORK / "hang.h5ad"
    path.write_bytes(apply(valid_h5ad(), [("flip", 436, 8), ("flip", 3992, 5)]))
    script = WORK / "open.py"
    script.write_text(HANG_SCRIPT)
    try:
        subprocess.run([sys.executable, str(script), str(path)], timeout=15, check=True)
    except subprocess.TimeoutExpired:
        pytest.fail("opening the file never returned")
