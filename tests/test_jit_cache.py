"""umap-learn's and pynndescent's numba functions are cached between processes (the neighbour
graph of a second ``prepare`` starts without compiling), and no other package's are touched."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json, numba, numpy as np
from c2s_desktop.core import jit_cache
assert jit_cache.enable() and jit_cache.enable()  # a second call wraps nothing again
import umap.umap_ as u
import pynndescent.distances as d

@numba.njit
def mine(x):
    return x + 1

rng = np.random.default_rng(0)
u.smooth_knn_dist(np.sort(rng.random((60, 10)).astype(np.float32), axis=1), 10.0)
mine(1)
print(json.dumps({
    "umap": type(u.smooth_knn_dist._cache).__name__,
    "pynndescent": type(d.euclidean._cache).__name__,
    "mine": type(mine._cache).__name__,
    "hits": sum(u.smooth_knn_dist.stats.cache_hits.values()),
    "misses": sum(u.smooth_knn_dist.stats.cache_misses.values()),
}))
"""


def run() -> dict:
    """The script in a new process, with numba's cache where it is by default (beside the
    packages, or ``NUMBA_CACHE_DIR``: shared with the rest of the run, so usually warm)."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_umap_functions_are_loaded_from_the_cache_by_the_next_process():
    first, second = run(), run()
    assert first["umap"] == first["pynndescent"] == "FunctionCache"
    assert first["mine"] == "NullCache"  # other packages' functions keep their own setting
    assert first["hits"] + first["misses"] >= 1  # compiled and stored, or loaded
    assert second["hits"] >= 1 and second["misses"] == 0  # the next process only loads it
