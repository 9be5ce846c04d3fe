"""CSV out: RFC 4180 quoting and atomic tables (results, selections, marker genes).

The cell-sentence CSV (:mod:`.sentence_csv`) streams its own lines for speed but quotes with
:func:`csv_field` and :func:`needs_csv_quotes`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write
from .errors import DataError


def csv_field(value: str) -> str:
    """Quote a CSV field when it holds a comma, quote or line break (RFC 4180)."""
    if any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


_CSV_SPECIAL = re.compile(r'[,"\r\n]')


def needs_csv_quotes(values: Sequence[str]) -> bool:
    """Whether any of ``values`` holds a comma, quote or line break (one regex pass)."""
    return bool(_CSV_SPECIAL.search("\x00".join(map(str, values))))


def cell_text(value: Any) -> str:
    """A table value as CSV text: missing (None, NA, NaN) is empty, floats have 6 digits."""
    if value is None or (isinstance(value, float | np.floating) and np.isnan(value)):
        return ""
    if type(value).__name__ == "NAType":  # pandas.NA, without importing pandas
        return ""
    if isinstance(value, float | np.floating):
        return f"{float(value):.6g}"
    return str(value)


def write_table_csv(
    path: str | Path, columns: Mapping[str, Sequence[Any]], *, overwrite: bool = False
) -> Path:
    """A CSV with the given columns (first column usually ``cell_id``), written atomically."""
    names = list(columns)
    if not names:
        raise DataError("nothing to write")
    n = len(columns[names[0]])
    with atomic_write(path, overwrite=overwrite) as fh:
        fh.write((",".join(csv_field(c) for c in names) + "\n").encode())
        lines = [",".join(csv_field(cell_text(columns[c][i])) for c in names) for i in range(n)]
        fh.write(("\n".join(lines) + ("\n" if lines else "")).encode())
    return Path(path)
