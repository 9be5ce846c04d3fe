"""Where tracebacks go: a per-user log file, never the user's screen."""

from __future__ import annotations

import datetime as _dt
import os
import traceback
from pathlib import Path

import platformdirs

APP_NAME = "c2s-desktop"


def log_dir() -> Path:
    """Per-user log folder (``$C2S_LOG_DIR`` overrides)."""
    env = os.environ.get("C2S_LOG_DIR")
    return Path(env) if env else Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def log_exception(exc: BaseException, context: str = "") -> Path | None:
    """Append ``exc``'s traceback to the log file; returns the log path (None if unwritable)."""
    try:
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "c2s-desktop.log"
        stamp = _dt.datetime.now().isoformat(timespec="seconds")
        text = "".join(traceback.format_exception(exc))
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"--- {stamp} {context}\n{text}\n")
        return path
    except OSError:
        return None
