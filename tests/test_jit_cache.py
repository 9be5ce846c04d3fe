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


PROBE = """
import numba

@numba.njit
def bare(x):
    return x + 1

@numba.njit("int64(int64)", fastmath=True)  # compiled at once
def typed(x):
    return x + 2

@numba.njit(cache=False)  # the package's own choice is kept
def own(x):
    return x + 3
"""


def _probe(tmp_path, monkeypatch, name: str):
    """A module ``name`` of numba functions, imported with ``numba.njit`` wrapped for it."""
    import importlib

    import numba

    from c2s_desktop.core import jit_cache

    (tmp_path / f"{name}.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(jit_cache, "PACKAGES", (name,))
    monkeypatch.setattr(numba, "njit", jit_cache._caching(numba.njit))
    return importlib.import_module(name)


def test_both_decorator_forms_are_cached_and_an_explicit_choice_kept(tmp_path, monkeypatch):
    probe = _probe(tmp_path, monkeypatch, "c2s_jit_probe_cached")
    assert (probe.bare(1), probe.typed(1), probe.own(1)) == (2, 3, 4)
    kinds = [type(f._cache).__name__ for f in (probe.bare, probe.typed, probe.own)]
    assert kinds == ["FunctionCache", "FunctionCache", "NullCache"]


def test_without_a_writable_cache_folder_functions_are_compiled_as_before(tmp_path, monkeypatch):
    from numba.core import caching

    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])  # nowhere to write
    probe = _probe(tmp_path, monkeypatch, "c2s_jit_probe_uncached")
    assert (probe.bare(1), probe.typed(1), probe.own(1)) == (2, 3, 4)
    assert {type(f._cache).__name__ for f in (probe.bare, probe.typed, probe.own)} == {"NullCache"}
