"""The audit log: one JSON line per job (what ran, on which files, with which model, outcome).

The log records *which* files were used (path + sha256), never what is in them: no cell ids,
sentences, prompts or answers. Each entry is appended with a single ``write`` on a file opened
with ``O_APPEND``, so two processes (the app and a ``c2s`` command) can log at the same time
without interleaving lines.

Location: ``$C2S_AUDIT_LOG`` if set, else ``audit.jsonl`` in the per-user data folder
(:func:`audit_path`). View it with ``c2s audit`` or *Help → Audit log* in the app.

Example (a GUI job)::

    from c2s_desktop.core import audit

    with audit.job("annotate", inputs=[data_path], model=model_path,
                   params={"mode": "representative"}) as entry:
        result = annotate(...)          # Cancelled → status "cancelled", errors → "failed"
        write_annotated_copy(data_path, out, ...)
        entry.outputs.append(out)

or, after the fact, ``audit.record("embed", inputs=[data_path], model=model_path,
outputs=[out], status="ok", duration_s=12.5)``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from .. import __version__
from .errors import Cancelled

AUDIT_ENV = "C2S_AUDIT_LOG"
APP_NAME = "c2s-desktop"
FILE_NAME = "audit.jsonl"
STATUS_OK, STATUS_FAILED, STATUS_CANCELLED = "ok", "failed", "cancelled"

# Parameter names whose values could hold cell data, free text about cells or credentials:
# never logged.
_PRIVATE_KEYS = frozenset(
    {"rows", "cells_ids", "cell_ids", "sentence", "sentences", "prompt", "answer", "answers"}
    | {"text", "question", "history", "template", "values", "tokens"}
    | {"api_key", "apikey", "password", "secret", "token", "authorization", "headers"}
)
_MAX_TEXT = 200
_MAX_ITEMS = 100
_HASH_CACHE_SIZE = 512

log = logging.getLogger(__name__)


def audit_path() -> Path:
    """The audit log file (``$C2S_AUDIT_LOG`` overrides the per-user data folder)."""
    env = os.environ.get(AUDIT_ENV)
    if env:
        return Path(env)
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / FILE_NAME


# -- hashing (cached: inputs and models can be tens of GB; the one sha256 cache of the app) -----
def file_sha256(path: str | Path) -> str | None:
    """sha256 of ``path``; reuses an earlier result while path, size and mtime are unchanged.

    Returns None when the file cannot be read (a missing input of a failed job).
    """
    from .models import sha256_file

    try:
        p = Path(path).resolve()
        st = p.stat()
    except OSError:
        return None
    if p.is_dir():  # a Cell Ranger matrix folder
        return folder_sha256(p)
    if not p.is_file():
        return None
    key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
    with _cache_lock:
        cached = _load_cache().get(key)
    if cached is not None:
        return cached
    try:
        digest = sha256_file(p)
    except OSError:
        return None
    with _cache_lock:  # GUI jobs hash from several threads
        cache = _load_cache()
        cache[key] = digest
        _save_cache(cache)
    return digest


def cached_sha256_only(path: str | Path) -> str | None:
    """The cached sha256 of ``path`` while it is unchanged, without hashing (None if unknown)."""
    try:
        p = Path(path).resolve()
        st = p.stat()
    except OSError:
        return None
    with _cache_lock:
        return _load_cache().get(f"{p}|{st.st_size}|{st.st_mtime_ns}")


def folder_sha256(folder: str | Path) -> str | None:
    """sha256 of a folder: over its sorted member files' relative paths and sha256.

    Members are the regular files below ``folder`` (hidden ones skipped); None if one cannot be
    read. Renaming, adding, removing or changing a member changes the hash.
    """
    import hashlib

    root = Path(folder)
    try:
        members = sorted(
            (f.relative_to(root).as_posix(), f)
            for f in root.rglob("*")
            if f.is_file() and not any(x.startswith(".") for x in f.relative_to(root).parts)
        )
    except OSError:
        return None
    digest = hashlib.sha256()
    for rel, f in members:
        member = file_sha256(f)
        if member is None:
            return None
        digest.update(f"{rel}\0{member}\n".encode())
    return digest.hexdigest()


def _cache_path() -> Path:
    return audit_path().with_name("sha256-cache.json")


_memory_caches: dict[Path, dict[str, str]] = {}
"""The cache file's contents per file (``$C2S_AUDIT_LOG`` moves it), read once."""
_cache_lock = threading.Lock()


def _load_cache() -> dict[str, str]:
    path = _cache_path()
    cache = _memory_caches.get(path)
    if cache is None:
        cache = _memory_caches[path] = {}
        try:
            data = json.loads(path.read_text("utf-8"))
            if isinstance(data, dict):
                cache.update({str(k): str(v) for k, v in data.items()})
        except (OSError, ValueError):
            pass
    return cache


def _save_cache(cache: dict[str, str]) -> None:
    from .atomic import atomic_write

    while len(cache) > _HASH_CACHE_SIZE:  # oldest first (dicts keep insertion order)
        cache.pop(next(iter(cache)))
    try:
        _cache_path().parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(_cache_path()) as fh:
            fh.write(json.dumps(cache).encode())
    except Exception as exc:  # noqa: BLE001 - a cache: losing it only costs time
        log.warning("sha256 cache not saved: %s", exc)


# -- writing -----------------------------------------------------------------------------------
def _clean(value: Any, depth: int = 0) -> Any:
    """Plain JSON values only: short strings, numbers, short lists/dicts; anything else → type."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, str | Path):
        text = str(value)
        return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "…"
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy scalar
        return _clean(value.item(), depth)
    if depth < 2 and isinstance(value, Mapping):
        return clean_params(value, depth + 1)
    if depth < 2 and isinstance(value, list | tuple) and len(value) <= _MAX_ITEMS:
        return [_clean(v, depth + 1) for v in value]
    return f"<{type(value).__name__}>"


def clean_params(params: Mapping[str, Any] | None, depth: int = 0) -> dict[str, Any]:
    """``params`` without keys that could hold cell data and with only small plain values."""
    return {
        str(k): _clean(v, depth)
        for k, v in (params or {}).items()
        if str(k).lower() not in _PRIVATE_KEYS
    }


def record(
    task: str,
    *,
    inputs: Sequence[str | Path] = (),
    model: str | Path | None = None,
    engine: str | None = None,
    params: Mapping[str, Any] | None = None,
    outputs: Sequence[str | Path] = (),
    status: str = STATUS_OK,
    duration_s: float | None = None,
    error: str | None = None,
) -> dict[str, Any] | None:
    """Append one entry for a finished job; returns it (None if the log cannot be written).

    ``inputs``/``model`` are files (hashed, cached by path+size+mtime); ``engine`` describes a
    model that is not a local file (e.g. a server URL). ``params`` are the job's options (plain
    values; keys that could carry cell data are dropped). ``error`` is the error class name.
    Never raises: a job's result is not lost because the log is unwritable (it is logged).
    """
    entry: dict[str, Any] = {
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds"),
        "app": __version__,
        "task": task,
        "status": status,
        "duration_s": None if duration_s is None else round(float(duration_s), 3),
        "inputs": [{"path": _abs(p), "sha256": file_sha256(p)} for p in inputs],
        "model": None,
        "engine": None if engine is None else _without_credentials(engine),
        "params": clean_params(params),
        "outputs": [_abs(p) for p in outputs],
    }
    if model is not None:
        entry["model"] = {"path": _abs(model), "name": Path(model).name}
        entry["model"]["sha256"] = file_sha256(model)
    if error:
        entry["error"] = error
    try:
        append_line(audit_path(), json.dumps(entry, ensure_ascii=False, sort_keys=True))
    except OSError as exc:
        log.warning("audit log %s not written: %s", audit_path(), exc)
        return None
    return entry


def append_line(path: Path, line: str) -> None:
    """Append ``line`` + newline with one ``write`` on an ``O_APPEND`` descriptor."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (line.replace("\n", " ") + "\n").encode("utf-8")
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, 0o600)
    try:
        written = os.write(fd, data)
        if written != len(data):  # only on a full disk; a short line is skipped by readers
            raise OSError(f"short write to {path}")
    finally:
        os.close(fd)


def _without_credentials(url: str) -> str:
    """A server URL without ``user:password@`` and without its query string."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable address>"
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _abs(path: str | Path) -> str:
    return str(Path(path).absolute())


@dataclass
class Job:
    """A running job's audit entry: append output paths; status follows the block's outcome."""

    task: str
    inputs: list[str | Path] = field(default_factory=list)
    model: str | Path | None = None
    engine: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    outputs: list[str | Path] = field(default_factory=list)


@contextlib.contextmanager
def job(
    task: str,
    *,
    inputs: Sequence[str | Path] = (),
    model: str | Path | None = None,
    engine: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> Iterator[Job]:
    """Record the enclosed work as one entry: ``ok``, ``cancelled`` (Cancelled, Ctrl-C) or
    ``failed`` (any other exception, whose class name is logged). Exceptions propagate."""
    entry = Job(task, list(inputs), model, engine, dict(params or {}))
    start = time.perf_counter()
    status, error = STATUS_OK, None
    try:
        yield entry
    except (Cancelled, KeyboardInterrupt):
        status = STATUS_CANCELLED
        raise
    except BaseException as exc:
        status, error = STATUS_FAILED, type(exc).__name__
        raise
    finally:
        record(
            entry.task,
            inputs=entry.inputs,
            model=entry.model,
            engine=entry.engine,
            params=entry.params,
            outputs=entry.outputs if status == STATUS_OK else [],
            status=status,
            duration_s=time.perf_counter() - start,
            error=error,
        )


# -- reading -----------------------------------------------------------------------------------
def read_entries(limit: int | None = None, path: str | Path | None = None) -> list[dict[str, Any]]:
    """The last ``limit`` entries (all when None), oldest first; unreadable lines are skipped."""
    p = Path(path) if path is not None else audit_path()
    try:
        with open(p, "rb") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return []
    entries: list[dict[str, Any]] = []
    for raw in lines:
        try:
            value = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue
        if isinstance(value, dict):
            entries.append(value)
    return entries if limit is None else entries[-limit:] if limit > 0 else []


def summary(entry: Mapping[str, Any]) -> dict[str, str]:
    """One entry as display strings: time, task, status, input, model, outputs, duration."""
    inputs = entry.get("inputs") or []
    model = entry.get("model") or {}
    duration = entry.get("duration_s")
    return {
        "time": str(entry.get("time", "")).replace("T", " ")[:19],
        "task": str(entry.get("task", "")),
        "status": str(entry.get("status", "")),
        "input": ", ".join(Path(str(i.get("path", ""))).name for i in inputs),
        "model": str(model.get("name") or entry.get("engine") or ""),
        "outputs": ", ".join(str(o) for o in entry.get("outputs") or []),
        "duration": "" if duration is None else f"{float(duration):.1f} s",
    }
