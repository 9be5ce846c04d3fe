"""anndata's element reader/writer, wherever this anndata version keeps them.

Imported at module level on purpose: a first import on a worker thread while Qt paints can crash
PySide6, so every core module that needs them imports them from here at import time.
"""

from __future__ import annotations

try:
    from anndata.io import read_elem, write_elem
except ImportError:  # anndata < 0.11
    from anndata.experimental import read_elem, write_elem

__all__ = ["read_elem", "write_elem"]
