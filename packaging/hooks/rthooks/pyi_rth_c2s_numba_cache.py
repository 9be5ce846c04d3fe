"""numba's JIT cache goes to a per-user folder, never into the bundle (see c2s_desktop.spec).

scanpy, umap-learn and pynndescent compile functions with numba (``cache=True``). numba keeps
that machine code next to the module's source or, for a frozen program, in a folder named
after the current directory. The bundle holds ``.pyc`` files whose code names a path relative
to the bundle (``pynndescent/utils.py``), so neither fits: this hook points ``NUMBA_CACHE_DIR``
at ``<user cache>/c2s-desktop/numba`` (a temporary folder if that is not writable) and, when
``numba.core.caching`` is imported, puts a locator first that stores every bundled module's
functions there, stamped with the module's ``.pyc`` (a new build invalidates the cache).
"""

import contextlib
import importlib.abc
import os
import sys
import tempfile

_BUNDLE = sys._MEIPASS  # noqa: SLF001 - PyInstaller's folder


def _writable(path):
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def _cache_dir():
    chosen = os.environ.get("NUMBA_CACHE_DIR")
    if chosen and _writable(chosen):
        return chosen
    try:
        import platformdirs

        base = platformdirs.user_cache_dir("c2s-desktop", appauthor=False)
    except Exception:  # noqa: BLE001 - any failure: the home folder's default
        base = os.path.join(os.path.expanduser("~"), ".cache", "c2s-desktop")
    path = os.path.join(base, "numba")
    if _writable(path):
        return path
    uid = os.getuid() if hasattr(os, "getuid") else os.getpid()
    return os.path.join(tempfile.gettempdir(), f"c2s-desktop-numba-{uid}")


CACHE_DIR = _cache_dir()
os.environ["NUMBA_CACHE_DIR"] = CACHE_DIR


def _install_locator(caching):
    """Put a locator for the bundle's own modules before numba's (private API, guarded)."""
    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl  # noqa: SLF001
    mixin = caching._SourceFileBackedLocatorMixin  # noqa: SLF001
    base = caching._CacheLocator  # noqa: SLF001

    class BundleCacheLocator(mixin, base):
        def __init__(self, py_func, py_file):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            folder = os.path.dirname(os.path.normpath(py_file))
            self._cache_path = os.path.join(CACHE_DIR, folder.replace(os.sep, ".") or "_")
            pyc = os.path.join(_BUNDLE, os.path.splitext(py_file)[0] + ".pyc")
            packed = os.path.join(_BUNDLE, "python-packages.zip")
            self._stamp_file = next((p for p in (pyc, packed) if os.path.isfile(p)), sys.executable)

        def get_cache_path(self):
            return self._cache_path

        def get_source_stamp(self):
            st = os.stat(self._stamp_file)
            return st.st_mtime, st.st_size

        @classmethod
        def from_function(cls, py_func, py_file):
            if os.path.isabs(py_file) or py_file.startswith("<"):
                return None  # not a bundled module: numba's own locators decide
            self = cls(py_func, py_file)
            try:
                self.ensure_cache_path()
            except OSError:
                return None
            return self

    impl._locator_classes.insert(0, BundleCacheLocator)  # noqa: SLF001


class _PatchNumbaCaching(importlib.abc.MetaPathFinder):
    """Runs :func:`_install_locator` right after ``numba.core.caching`` is executed."""

    def find_spec(self, name, path=None, target=None):
        if name != "numba.core.caching":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                break
        else:
            return None
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            # On failure numba's own locator for frozen programs still works.
            with contextlib.suppress(Exception):
                _install_locator(module)

        spec.loader.exec_module = exec_and_patch
        return spec


sys.meta_path.insert(0, _PatchNumbaCaching())
