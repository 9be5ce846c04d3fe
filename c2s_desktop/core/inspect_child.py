"""A first look at a new HDF5 file in a child process, so a damaged file cannot hang the app.

Some damaged HDF5 structures make the HDF5 library loop forever (it cannot be interrupted from
Python). :func:`check_hdf5_finishes` therefore walks a file not seen before in a small child
process (``python -m c2s_desktop.core.inspect_child FILE``: h5py only, no Qt, no engine) that
reads every attribute and a sample of every dataset, and kills it after
``$C2S_INSPECT_TIMEOUT`` seconds (default 60). Files that passed are remembered (resolved path,
size, mtime) in the per-user cache folder (``$C2S_CACHE_DIR`` overrides), so they open at once
the next time.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import platformdirs

from .errors import Cancelled, InputFileError
from .progress import CancelToken, ProgressFn, no_progress

APP_NAME = "c2s-desktop"
CACHE_ENV = "C2S_CACHE_DIR"
TIMEOUT_ENV = "C2S_INSPECT_TIMEOUT"
DEFAULT_TIMEOUT_S = 60.0
CACHE_FILE = "inspected-files.json"
MAX_ENTRIES = 2048
EXIT_OK, EXIT_READ_ERROR = 0, 3
_FULL_READ_BYTES = 64 * 1024**2
_SAMPLE = 65536

log = logging.getLogger(__name__)
_lock = threading.Lock()


def cache_dir() -> Path:
    """Per-user cache folder (``$C2S_CACHE_DIR`` overrides)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def inspect_timeout() -> float:
    """Seconds the child may take (``$C2S_INSPECT_TIMEOUT``, default 60)."""
    try:
        return max(0.1, float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
    except ValueError:
        return DEFAULT_TIMEOUT_S


def _key(path: Path) -> str:
    p = path.resolve()
    st = p.stat()
    return f"{p}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"


def _load() -> dict[str, bool]:
    try:
        data = json.loads((cache_dir() / CACHE_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): True for k in data} if isinstance(data, dict) else {}


def _remember(key: str) -> None:
    from .atomic import atomic_write

    with _lock:
        data = _load()
        data.pop(key, None)
        data[key] = True
        while len(data) > MAX_ENTRIES:
            data.pop(next(iter(data)))
        try:
            cache_dir().mkdir(parents=True, exist_ok=True)
            with atomic_write(cache_dir() / CACHE_FILE, overwrite=True) as fh:
                fh.write(json.dumps(data).encode())
        except Exception as exc:  # noqa: BLE001 - a cache: losing it only costs time
            log.warning("inspected-files cache not saved: %s", exc)


def is_known(path: str | Path) -> bool:
    """Whether ``path`` (unchanged since) already passed the check."""
    try:
        return _key(Path(path)) in _load()
    except OSError:
        return False


def check_hdf5_finishes(
    path: str | Path,
    *,
    timeout: float | None = None,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> None:
    """Make sure reading ``path``'s HDF5 structure finishes; InputFileError if it hangs.

    A read error in the child is left to the in-process open (it gives the precise message);
    a crash or a timeout becomes an :class:`InputFileError`. Cancel kills the child.
    """
    p = Path(path)
    try:
        key = _key(p)
    except OSError:
        return  # the in-process open reports a missing or unreadable file
    with _lock:
        if key in _load():
            return
    limit = inspect_timeout() if timeout is None else timeout
    progress(0.01, "checking the file structure")
    cmd = [sys.executable, "-m", "c2s_desktop.core.inspect_child", str(p)]
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
        )
    except OSError as exc:  # cannot start a process here: open in-process as before
        log.warning("file check skipped (%s)", exc)
        return
    deadline = time.monotonic() + limit
    try:
        while True:
            try:
                _, err = proc.communicate(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                if cancel is not None and cancel.is_set():
                    raise Cancelled() from None
                if time.monotonic() > deadline:
                    raise InputFileError(
                        f"reading the file did not finish within {limit:g} s: its HDF5 "
                        "structure is damaged (or the disk is extremely slow)",
                        path=p,
                        hint=f"copy or download the file again (set {TIMEOUT_ENV} to wait longer)",
                    ) from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode == EXIT_OK:
        _remember(key)
    elif proc.returncode != EXIT_READ_ERROR:
        detail = (err or b"").decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        log.warning("file check of %s ended with %s: %s", p, proc.returncode, detail[0])
        raise InputFileError(
            f"reading the file crashed the HDF5 library (exit status {proc.returncode}): its "
            "structure is damaged",
            path=p,
            hint="copy or download the file again",
        )


# -- the child ---------------------------------------------------------------------------------
def _touch(obj) -> None:  # noqa: ANN001 - an h5py Group or Dataset
    import h5py

    for name in obj.attrs:
        obj.attrs[name]
    if not isinstance(obj, h5py.Dataset) or obj.shape is None:
        return
    if obj.shape == ():
        obj[()]
        return
    if obj.size * max(1, obj.dtype.itemsize) <= _FULL_READ_BYTES:
        obj[()]
        return
    n = obj.shape[0]
    rows = max(1, min(n, _SAMPLE // max(1, obj.size // max(1, n))))
    obj[:rows]
    obj[n - 1 :]


def walk(path: str) -> None:
    """Read every attribute and a sample of every dataset of the HDF5 file ``path``."""
    import h5py

    with h5py.File(path, "r") as f:
        _touch(f)
        f.visititems(lambda _name, obj: _touch(obj))


def main(argv: list[str] | None = None) -> int:
    """Child entry point: exit 0 when the walk finished, 3 when h5py raised."""
    args = sys.argv[1:] if argv is None else argv
    try:
        walk(args[0])
    except Exception as exc:  # noqa: BLE001 - any read error: the parent reports it precisely
        print(f"{exc.__class__.__name__}: {exc}", file=sys.stderr)
        return EXIT_READ_ERROR
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
