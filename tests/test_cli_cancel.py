"""Ctrl-C during ``c2s sentences`` stops cleanly: exit 130, no output, no temporary files."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import scipy.sparse as sp

from .conftest import write_h5ad


@pytest.mark.timing
def test_ctrl_c_cancels_within_a_second_without_output(tmp_path):
    rng = np.random.default_rng(0)
    X = sp.random(20_000, 2_000, density=0.05, format="csr", dtype=np.float32, random_state=rng)
    X.data = np.ceil(X.data * 5)
    data = write_h5ad(tmp_path / "big.h5ad", X)
    out = tmp_path / "out.csv"
    code = (
        "import sys, time, c2s_desktop.core.sentences as w, c2s_desktop.core.sentence_csv as c\n"
        "w.TARGET_CHUNK_NNZ = 20_000\n"  # many small chunks (200 rows) ...
        "ranked = c.iter_ranked\n"
        "def slow(*a, **k):\n"  # ... each 50 ms longer: a run of ~5 s to interrupt
        "    for item in ranked(*a, **k):\n"
        "        time.sleep(0.05)\n"
        "        yield item\n"
        "c.iter_ranked = slow\n"
        "from c2s_desktop.cli import main\n"
        f"main(['sentences', {str(data)!r}, '-o', {str(out)!r}])\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal, also when this suite runs in the background (where a shell starts
        # its jobs with Ctrl-C ignored, and Python then keeps it ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".out.csv.*")):
        time.sleep(0.05)  # wait until writing has started
    assert list(tmp_path.glob(".out.csv.*")), "writing never started"
    sent = time.time()
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=30)
    stopped = time.time() - sent
    print(f"stopped {stopped:.2f} s after Ctrl-C")
    assert rc == 130, proc.stderr.read()
    assert "cancelled" in proc.stderr.read()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.h5ad"]
    assert stopped < 5  # generous: the machine may be busy; typical is well under a second
