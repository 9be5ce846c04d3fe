"""numba keeps the machine code of umap-learn and pynndescent between runs.

scanpy's neighbour graph and UMAP use umap-learn, which imports pynndescent; together they
compile about 250 functions with numba in every new process (some at import, with explicit
signatures), about 10 s of one core before the first neighbour is found, and few of them ask
numba to keep the result. :func:`enable`, called before those packages are imported, makes
``numba.njit`` cache the functions they define. numba stores each one beside its package
(``__pycache__``) or under ``NUMBA_CACHE_DIR`` (the bundle sets a per-user folder), keyed by the
source file and its time stamp, the signature and the CPU: an upgrade or another CPU compiles
afresh, and a function numba cannot cache is compiled as before (numba warns and goes on).
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
    """Wrap ``numba.njit`` so that functions of :data:`PACKAGES` are cached; ``True`` when the
    wrapper is in place (``False`` without numba). Functions compiled before the call keep
    their setting: call it before umap-learn is imported."""
    try:
        import numba
    except ImportError:
        return False
    if not getattr(numba.njit, _MARK, False):
        numba.njit = _caching(numba.njit)
    return True


def _caching(njit: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(njit)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if "cache" not in kwargs and _caller_module(args).startswith(_PREFIXES):
            kwargs["cache"] = True
        return njit(*args, **kwargs)

    setattr(wrapper, _MARK, True)
    return wrapper


_PREFIXES = tuple(f"{p}." for p in PACKAGES) + PACKAGES


def _caller_module(args: tuple[Any, ...]) -> str:
    """The module of the decorated function: its own ``__module__`` for a bare ``@njit``,
    else the module whose code calls ``njit(...)`` (two frames up: wrapper, then caller)."""
    if args and callable(args[0]) and hasattr(args[0], "__module__"):
        return str(args[0].__module__ or "")
    frame = sys._getframe(2)
    return str(frame.f_globals.get("__name__", ""))


def quiet_cache_warnings() -> None:
    """numba's "cannot cache" notes about functions it compiles anyway are not the user's
    concern."""
    try:
        from numba.core.errors import NumbaWarning
    except ImportError:
        return
    warnings.filterwarnings("ignore", message=".*[Cc]annot cache.*", category=NumbaWarning)
