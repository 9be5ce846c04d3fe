"""Resumable batch runs: the cells an annotation has scored, kept in the per-user data folder.

A run is named by a key (sha256 of what decides its result: input, selection, model, options);
its checkpoint is a JSON-lines file, ``<folder>/checkpoints/<task>-<key>.jsonl``: a header, then
one line per scored cell (``{"i": position, "v": [values]}``, floats written exactly). Lines
are appended and flushed as cells finish, so a crash, Ctrl-C or a dropped connection loses at
most the cells in flight; a torn last line is ignored. The same run started again reads the
scored cells back and scores only the rest; the file is removed once the result is complete.
Checkpoints older than :data:`MAX_AGE_DAYS` are pruned when a run starts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import platformdirs

from .logs import APP_NAME

log = logging.getLogger(__name__)

CHECKPOINT_ENV = "C2S_CHECKPOINT_DIR"
MAX_AGE_DAYS = 30
_FORMAT = 1
_SYNC_EVERY_S = 2.0


def checkpoint_dir() -> Path:
    """Folder of checkpoints (``$C2S_CHECKPOINT_DIR`` overrides the per-user data folder)."""
    env = os.environ.get(CHECKPOINT_ENV)
    if env:
        return Path(env)
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "checkpoints"


def run_key(parts: dict[str, Any]) -> str:
    """sha256 of ``parts`` (JSON with sorted keys; values must be JSON-able or strings)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def digest(items: Sequence[str] | bytes) -> str:
    """sha256 of a byte string or of a sequence of strings (each one delimited)."""
    h = hashlib.sha256()
    if isinstance(items, bytes):
        h.update(items)
    else:
        for item in items:
            data = item.encode()
            h.update(len(data).to_bytes(8, "little"))
            h.update(data)
    return h.hexdigest()


class Checkpoint:
    """The scored items of one run: :attr:`done` (read back at open), :meth:`add` as items
    finish, :meth:`finish` when the result is complete (removes the file).

    A file that is unreadable or written for other items (``n_items``/``width``) is replaced.
    Failing to write (disk full, read-only folder) logs a warning and stops checkpointing; the
    run itself goes on.
    """

    def __init__(self, task: str, key: str, n_items: int, width: int) -> None:
        self.path = checkpoint_dir() / f"{task}-{key[:32]}.jsonl"
        self.n_items, self.width = n_items, width
        self.done: dict[int, list[float]] = {}
        self.meta: dict[str, Any] = {}
        self._fh: IO[str] | None = None
        self._synced = time.monotonic()
        _prune(self.path.parent)
        self._read()
        self._open()

    @property
    def resumed(self) -> int:
        """Items read back from an earlier, interrupted run."""
        return len(self.done)

    def add(self, i: int, values: Sequence[float]) -> None:
        """Record item ``i`` (its ``width`` values, written exactly)."""
        self._write({"i": int(i), "v": [float(v) for v in values]})

    def note(self, **meta: Any) -> None:
        """Record run-level facts (e.g. the scoring method's warning) for a resumed run."""
        self.meta.update(meta)
        self._write({"meta": meta})

    def close(self) -> None:
        """Flush and close the file (kept for the next run)."""
        if self._fh is not None:
            try:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()
            except OSError as exc:
                log.warning("checkpoint %s not saved: %s", self.path, exc)
            self._fh = None

    def finish(self) -> None:
        """The result is complete: the checkpoint is no longer needed."""
        self.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- file ------------------------------------------------------------------------------------
    def _header(self) -> dict[str, Any]:
        return {"format": _FORMAT, "n": self.n_items, "width": self.width}

    def _read(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as fh:
                lines = fh.read().split("\n")
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("checkpoint %s unreadable, starting again: %s", self.path, exc)
            return
        try:
            header = json.loads(lines[0])
        except ValueError:
            header = None
        if header != self._header():
            return
        for line in lines[1:]:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # the torn last line of an interrupted write
            if "meta" in record:
                self.meta.update(record["meta"])
                continue
            i, values = record.get("i"), record.get("v")
            if isinstance(i, int) and 0 <= i < self.n_items and len(values or ()) == self.width:
                self.done[i] = [float(v) for v in values]

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 (kept open for the run)
            fh.write(json.dumps(self._header()) + "\n")
            for i in sorted(self.done):
                fh.write(json.dumps({"i": i, "v": self.done[i]}) + "\n")
            if self.meta:
                fh.write(json.dumps({"meta": self.meta}) + "\n")
            fh.flush()
        except OSError as exc:
            log.warning("cannot write the checkpoint %s: %s", self.path, exc)
            return
        self._fh = fh

    def _write(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            return
        try:
            self._fh.write(json.dumps(record) + "\n")
            self._fh.flush()  # in the OS's hands: survives the process being killed
            if time.monotonic() - self._synced > _SYNC_EVERY_S:
                os.fsync(self._fh.fileno())
                self._synced = time.monotonic()
        except OSError as exc:
            log.warning("checkpoint %s stopped: %s", self.path, exc)
            self._fh = None


def _prune(folder: Path) -> None:
    """Remove checkpoints not touched for :data:`MAX_AGE_DAYS` days."""
    limit = time.time() - MAX_AGE_DAYS * 86400
    try:
        for p in folder.glob("*.jsonl"):
            if p.stat().st_mtime < limit:
                p.unlink(missing_ok=True)
    except OSError:
        pass
