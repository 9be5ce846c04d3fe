"""File helpers: JSON reading with user-facing errors, hashing, free space, atomic outputs."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import QuantizeError
from .progress import CancelToken, ProgressFn, check_cancel

_HASH_BLOCK = 8 << 20


def read_json(path: Path) -> Any:
    """Parsed JSON of ``path``; a broken file raises QuantizeError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QuantizeError(f"invalid JSON ({exc})", "download the file again", path) from None


def read_optional_json(path: Path) -> dict[str, Any] | None:
    """Like :func:`read_json` for an optional file holding an object; None if absent."""
    if not path.is_file():
        return None
    data = read_json(path)
    return data if isinstance(data, dict) else None


def sha256_file(
    path: Path, progress: ProgressFn | None = None, cancel: CancelToken | None = None
) -> str:
    """Hex SHA-256 of a file, read in blocks; progress is the fraction of the file read."""
    digest, size, done = hashlib.sha256(), max(path.stat().st_size, 1), 0
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            check_cancel(cancel)
            digest.update(block)
            done += len(block)
            if progress is not None:
                progress(f"hashing {path.name}", done / size)
    return digest.hexdigest()


def free_bytes(directory: Path) -> int:
    """Free bytes on the file system holding ``directory``."""
    return shutil.disk_usage(directory).free


def ensure_free_space(directory: Path, needed: int, what: str) -> None:
    """Raise QuantizeError unless ``directory`` has ``needed`` bytes free."""
    free = free_bytes(directory)
    if free < needed:
        raise QuantizeError(
            f"not enough free disk space for {what}: need {needed / 1e9:.2f} GB, "
            f"{free / 1e9:.2f} GB free",
            "free some space or choose another output folder",
            directory,
        )


@contextlib.contextmanager
def temporary_path(directory: Path, name: str, suffix: str = ".gguf") -> Iterator[Path]:
    """A fresh hidden file path in ``directory``, removed on exit whatever happens.

    The file is created empty with the usual permissions (umask applies, unlike mkstemp).
    """
    path = directory / f".{name}.{secrets.token_hex(4)}.c2s-tmp{suffix}"
    path.open("xb").close()
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output(final: Path) -> Iterator[Path]:
    """Yield a temp path next to ``final``; on success move it into place with ``os.replace``.

    On any exception (including cancel and KeyboardInterrupt) the temp file is removed and
    ``final`` is left untouched.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    with temporary_path(final.parent, final.name, suffix=final.suffix) as tmp:
        yield tmp
        os.replace(tmp, final)


def write_text_atomic(path: Path, text: str) -> None:
    """Write a small text file atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
