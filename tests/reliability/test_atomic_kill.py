"""SIGKILL during an export: the destination is the old file or the complete new one."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import pytest

from tests.badinput.corpus import DATA

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

N_ROWS = 400_000
TABLE_WRITER = """
import sys
from c2s_desktop.core.export import write_table_csv
n = int(sys.argv[2])
write_table_csv(sys.argv[1], {"cell_id": [f"cell{i}" for i in range(n)],
                              "label": [f"type {i % 7}" for i in range(n)]}, overwrite=True)
print("done", flush=True)
"""
COPY_WRITER = """
import sys
import numpy as np
from c2s_desktop.core.export import write_annotated_copy
n = int(sys.argv[3])
values = np.arange(n, dtype=np.float32)
write_annotated_copy(sys.argv[1], sys.argv[2], obs={"c2s_score": values}, overwrite=True)
print("done", flush=True)
"""


def _kill_mid_write(argv: list[str], folder: Path, attempts: int = 20) -> bool:
    """Start the writer, SIGKILL it while its temporary file exists; True if that happened."""
    for _ in range(attempts):
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if list(folder.glob(".*.part")):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.002)
        proc.wait()
    return False


def test_kill_during_csv_export_leaves_old_or_complete_file(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(TABLE_WRITER)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "table.csv"
    target.write_text("old contents\n")
    killed = _kill_mid_write([sys.executable, str(script), str(target), str(N_ROWS)], out_dir)
    assert killed, "the writer was never caught mid-write"
    text = target.read_text()
    complete = text.startswith("cell_id,label\n") and len(text.splitlines()) == N_ROWS + 1
    assert text == "old contents\n" or complete
    leftovers = [p.name for p in out_dir.iterdir() if p != target]
    assert all(name.startswith(".table.csv.") for name in leftovers)  # hidden temp, if any
    # the next run is unaffected by the leftover and completes
    done = subprocess.run([sys.executable, str(script), str(target), "10"], capture_output=True)
    assert done.returncode == 0 and len(target.read_text().splitlines()) == 11


def test_kill_during_annotated_copy_leaves_no_partial_h5ad(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(COPY_WRITER)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "annotated.h5ad"
    n_cells = ad.read_h5ad(DATA, backed="r").n_obs
    argv = [sys.executable, str(script), str(DATA), str(target), str(n_cells)]
    assert _kill_mid_write(argv, out_dir), "the writer was never caught mid-write"
    if target.exists():  # finished just before the kill: then it is complete
        assert "c2s_score" in ad.read_h5ad(target).obs
    others = [p.name for p in out_dir.iterdir() if p != target]
    assert all(name.startswith(".annotated.h5ad.") for name in others)
