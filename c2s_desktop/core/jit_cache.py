"""numba keeps the machine code of umap-learn and pynndescent between runs.

scanpy's neighbour graph and UMAP use umap-learn, which imports pynndescent; together they
compile about 250 functions with numba in every new process (some at import, with explicit
signatures), about 10 s of one core before the first neighbour is found, and few of them ask
numba to keep the result. :func:`enable`, called before those packages are imported, makes
``numba.njit`` cache the functions they define (a function that sets ``cache`` itself keeps its
choice). numba stores each one beside its package (``__pycache__``), else in the user's cache
folder, or under ``NUMBA_CACHE_DIR`` (the bundle sets a per-user folder), keyed by the source
file and its time stamp, the signature and the CPU: an upgrade or another CPU compiles afresh.
Where no folder is writable, or numba cannot cache a function, it is compiled as before.

First run of a prepare on the idle 2-core Xeon of the benchmarks: the neighbour graph and UMAP
took 14.7 s, 13 s of it compiling (and storing); every later run 1 s.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from typing import Any

# The packages whose numba functions are cached (their module names start so).
PACKAGES = ("umap", "pynndescent")
_MARK = "_c2s_caches"  # set on the wrapped njit, so enable() wraps it once


def enable() -> bool:
    """Wrap ``numba.njit`` so that functions of :data:`PACKAGES` are cached, and silence numba's
    "cannot cache" notes (such a function is compiled anyway; not the user's concern); ``True``
    when the wrapper is in place (``False`` without numba). Functions compiled before the call
    keep their setting: call it before umap-learn is imported."""
    try:
        import numba
        from numba.core.errors import NumbaWarning
    except ImportError:
        return False
    if not getattr(numba.njit, _MARK, False):
        numba.njit = _caching(numba.njit)
        warnings.filterwarnings("ignore", message=".*[Cc]annot cache.*", category=NumbaWarning)
    return True


def _caching(njit: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(njit)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if "cache" in kwargs or not _is_cached_package(_caller_module(args)):
            return njit(*args, **kwargs)
        if args and callable(args[0]):  # @numba.njit on the function itself
            return _cached_or_not(lambda cache: njit(*args, cache=cache, **kwargs))
        # @numba.njit(signatures, options): the decorator it returns compiles
        return lambda func: _cached_or_not(lambda cache: njit(*args, cache=cache, **kwargs)(func))

    setattr(wrapper, _MARK, True)
    return wrapper


def _cached_or_not(make: Callable[[bool], Any]) -> Any:
    """``make(True)``; ``make(False)`` where numba finds no writable place for the cache (it
    raises "cannot cache ... no locator available"): compiled as without this module."""
    try:
        return make(True)
    except RuntimeError as exc:
        if "cannot cache" not in str(exc):
            raise
        return make(False)


def _is_cached_package(module: str) -> bool:
    return any(module == p or module.startswith(f"{p}.") for p in PACKAGES)


def _caller_module(args: tuple[Any, ...]) -> str:
    """The module of the decorated function: its own ``__module__`` for a bare ``@njit``,
    else the module whose code calls ``njit(...)`` (two frames up: wrapper, then caller)."""
    if args and callable(args[0]) and hasattr(args[0], "__module__"):
        return str(args[0].__module__ or "")
    frame = sys._getframe(2)
    return str(frame.f_globals.get("__name__", ""))
