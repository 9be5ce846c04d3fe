"""Atomic output files: write to a temporary file beside the target, then ``os.replace``.

A crash or cancel leaves either the old file or the complete new one, never a partial file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import OutputError


def check_writable(path: str | Path, *, overwrite: bool = True) -> Path:
    """Fail early with :class:`OutputError` if ``path`` cannot be created."""
    p = Path(path)
    if p.exists() and p.is_dir():
        raise OutputError("is a folder, not a file", path=p, hint="give a file name")
    if p.exists() and not overwrite:
        raise OutputError("already exists", path=p, hint="choose another name or allow overwrite")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError("the folder does not exist", path=p, hint="create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(
            "cannot write to this folder (permission denied)",
            path=p,
            hint="choose a folder you can write to",
        )
    return p


@contextlib.contextmanager
def atomic_path(path: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """A temporary file name beside ``path`` for writers that open files by name (h5py,
    anndata); it is synced and replaces ``path`` only if the block succeeds."""
    target = check_writable(path, overwrite=overwrite)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"cannot create a file here ({exc.strerror})", path=target) from exc
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    except OSError as exc:
        remove_quietly(tmp)
        raise OutputError(
            f"writing failed ({exc.strerror or exc})",
            path=target,
            hint="check free disk space and permissions",
        ) from exc
    except BaseException:
        remove_quietly(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: str | Path, *, overwrite: bool = True) -> Iterator[BinaryIO]:
    """Open a temporary binary file that replaces ``path`` only if the block succeeds."""
    with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "wb") as fh:
        yield fh


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import: changing it later would race other threads


def share_like_new_files(folder: Path) -> None:
    """Give a folder built in a private temporary place (``mkdtemp``: owner only) and everything
    in it the permissions ordinary new files and folders get under the user's umask."""
    for root, _dirs, files in os.walk(folder):
        os.chmod(root, 0o777 & ~_UMASK)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~_UMASK)


def remove_quietly(tmp: str) -> None:
    """Delete a temporary file if it is still there."""
    with contextlib.suppress(OSError):
        os.unlink(tmp)
