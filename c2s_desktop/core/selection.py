"""Cell selections: geometry (lasso, rectangle), categories, named selections, CSV and session.

A selection is a sorted array of row indices into the dataset. :class:`SelectionModel` holds the
current selection and the named ones; it is plain Python so the GUI, the CLI and tests share it.
Named selections persist in a per-file session (JSON, written atomically) so nothing is lost.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import platformdirs

from .atomic import atomic_write
from .csv_table import write_table_csv
from .errors import DataError, InputFileError
from .logs import APP_NAME

MODE_REPLACE = "replace"
MODE_ADD = "add"
MODE_SUBTRACT = "subtract"
SESSION_VERSION = 1


def as_rows(rows: Iterable[int] | np.ndarray) -> np.ndarray:
    """Sorted unique int64 row indices."""
    arr = rows if isinstance(rows, np.ndarray) else np.fromiter(rows, np.int64)
    return np.unique(arr.astype(np.int64, copy=False))


def points_in_polygon(xy: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Boolean mask of the points ``xy`` (n × 2) inside ``polygon`` (m × 2, even-odd rule)."""
    poly = np.asarray(polygon, dtype=np.float64)
    inside = np.zeros(len(xy), dtype=bool)
    if len(poly) < 3:
        return inside
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    cand = np.flatnonzero(np.all((xy >= lo) & (xy <= hi), axis=1))
    x, y = xy[cand, 0].astype(np.float64), xy[cand, 1].astype(np.float64)
    hit = np.zeros(len(cand), dtype=bool)
    for (x1, y1), (x2, y2) in zip(poly, np.roll(poly, -1, axis=0), strict=True):
        if y1 == y2:
            continue
        crosses = (y1 > y) != (y2 > y)
        hit ^= crosses & (x < (x2 - x1) * (y - y1) / (y2 - y1) + x1)
    inside[cand] = hit
    return inside


def points_in_rect(
    xy: np.ndarray, corner1: Sequence[float], corner2: Sequence[float]
) -> np.ndarray:
    """Boolean mask of the points ``xy`` inside the axis-aligned rectangle of two corners."""
    lo, hi = np.minimum(corner1, corner2), np.maximum(corner1, corner2)
    return np.all((xy >= lo) & (xy <= hi), axis=1)


def rows_in_categories(values: pd.Series, categories: Iterable[str]) -> np.ndarray:
    """Rows whose value (as text) is one of ``categories``."""
    text = values.astype(object).where(values.notna(), "NA").astype(str)
    return np.flatnonzero(text.isin(list(categories)).to_numpy())


@dataclass(frozen=True)
class CategoryCount:
    """One category of an obs column: cells selected, share of the selection, cells in total."""

    category: str
    n_selected: int
    fraction: float
    n_total: int


def composition(values: pd.Series, rows: np.ndarray) -> list[CategoryCount]:
    """How the selected ``rows`` divide over the categories of ``values``, largest first."""
    text = values.astype(object).where(values.notna(), "NA").astype(str)
    total = text.value_counts()
    selected = text.iloc[np.asarray(rows, dtype=np.int64)].value_counts()
    n = max(1, len(rows))
    out = [CategoryCount(str(c), int(k), k / n, int(total[c])) for c, k in selected.items()]
    return sorted(out, key=lambda c: (-c.n_selected, c.category))


@dataclass(frozen=True)
class Selection:
    """A named set of cells (sorted row indices)."""

    name: str
    rows: np.ndarray = field(compare=False)

    @property
    def n_cells(self) -> int:
        return len(self.rows)


class SelectionModel:
    """The current selection and the named, saved ones for one dataset of ``n_cells`` cells."""

    def __init__(self, n_cells: int) -> None:
        self.n_cells = n_cells
        self.current = np.zeros(0, dtype=np.int64)
        self.saved: dict[str, Selection] = {}
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` after each change of the current or a named selection; returns
        the function that unsubscribes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def changed(self) -> None:
        """Tell the subscribers (called by every change; call it after editing ``saved``)."""
        for listener in list(self._listeners):
            listener()

    def update(self, rows: Iterable[int] | np.ndarray, mode: str = MODE_REPLACE) -> np.ndarray:
        """Replace, extend or reduce the current selection; returns it."""
        new = as_rows(rows)
        if len(new) and (new[0] < 0 or new[-1] >= self.n_cells):
            raise DataError(f"cell rows outside 0..{self.n_cells - 1}")
        if mode == MODE_ADD:
            new = np.union1d(self.current, new)
        elif mode == MODE_SUBTRACT:
            new = np.setdiff1d(self.current, new, assume_unique=True)
        elif mode != MODE_REPLACE:
            raise ValueError(f"unknown selection mode {mode!r}")
        self.current = new
        self.changed()
        return new

    def mask(self) -> np.ndarray:
        """The current selection as a boolean mask over all cells."""
        out = np.zeros(self.n_cells, dtype=bool)
        out[self.current] = True
        return out

    def save(self, name: str) -> Selection:
        """Store the current selection under ``name`` (replacing one of the same name)."""
        name = name.strip()
        if not name:
            raise DataError("a selection needs a name", hint="type a name, e.g. 'T cells'")
        if not len(self.current):
            raise DataError("nothing is selected", hint="select cells before saving")
        sel = Selection(name, self.current.copy())
        self.saved[name] = sel
        self.changed()
        return sel

    def restore(self, name: str) -> np.ndarray:
        """Make the saved selection ``name`` current."""
        return self.update(self.saved[name].rows)

    def remove(self, name: str) -> None:
        if self.saved.pop(name, None) is not None:
            self.changed()


def export_csv(
    path: str | Path,
    cell_ids: np.ndarray,
    rows: np.ndarray,
    obs: pd.DataFrame | None = None,
    columns: Sequence[str] = (),
) -> Path:
    """Write ``cell_id[,obs columns]`` of the selected rows to ``path`` atomically."""
    rows = np.asarray(rows, dtype=np.int64)
    table: dict[str, list[str]] = {"cell_id": [str(v) for v in cell_ids[rows]]}
    for name in columns:
        if obs is None:
            raise DataError(f"no obs column '{name}'")
        col = obs[name].iloc[rows]
        table[name] = col.astype(object).where(col.notna(), "").astype(str).tolist()
    return write_table_csv(path, table)


def session_dir() -> Path:
    """Per-user folder of autosaved sessions (``$C2S_SESSION_DIR`` overrides)."""
    env = os.environ.get("C2S_SESSION_DIR")
    return Path(env) if env else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def session_file(data_path: str | Path) -> Path:
    """The session file of a dataset: keyed by its absolute path, size and modification time."""
    p = Path(data_path).resolve()
    st = p.stat()
    key = hashlib.sha1(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return session_dir() / "sessions" / f"{p.stem}-{key}.json"


def save_selections(path: str | Path, data_path: str | Path, model: SelectionModel) -> Path:
    """Write the named selections of ``model`` to the session file ``path`` (atomic).

    Everything else a newer session holds (results, conversations: :mod:`.session`) is kept.
    """
    doc: dict = {}
    with contextlib.suppress(OSError, ValueError, TypeError):
        old = json.loads(Path(path).read_text(encoding="utf-8"))
        if isinstance(old, dict) and old.get("n_cells") == model.n_cells:
            int(old.get("version", 1))
            doc = old
    doc.update(
        {
            "version": max(SESSION_VERSION, int(doc.get("version", 1))),
            "data": str(data_path),
            "n_cells": model.n_cells,
            "selections": {s.name: s.rows.tolist() for s in model.saved.values()},
        }
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as fh:
        fh.write(json.dumps(doc).encode())
    return Path(path)


def load_selections(path: str | Path, model: SelectionModel) -> int:
    """Add the named selections stored in ``path`` to ``model``; returns how many were read."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        stored = doc["selections"] if doc.get("n_cells") == model.n_cells else {}
        for name, rows in stored.items():
            sel = as_rows(rows)
            if len(sel) and sel[0] >= 0 and sel[-1] < model.n_cells:
                model.saved[str(name)] = Selection(str(name), sel)
        if stored:
            model.changed()
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputFileError(
            f"cannot read the saved session ({exc})",
            path=path,
            hint="the session file is damaged; delete it to start afresh",
        ) from exc
    return len(stored)
