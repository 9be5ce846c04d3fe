"""Resumable annotation: the checkpoint file, an interrupted core run continued, and a
``c2s annotate`` killed midway and run again giving the uninterrupted run's output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from c2s_desktop.core.checkpoints import CHECKPOINT_ENV, Checkpoint, checkpoint_dir
from c2s_desktop.core.dataset import open_dataset
from c2s_desktop.core.engine.local import LocalEngine
from c2s_desktop.core.errors import Cancelled
from c2s_desktop.core.resources import resource_path
from c2s_desktop.core.tasks.annotate import MODE_PER_CELL, AnnotateOptions, annotate

from ..helpers import annotation_record
from .conftest import OPTIONS

DATA = resource_path("demo", "pbmc_demo.h5ad")


@pytest.fixture(autouse=True)
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path / "checkpoints"))
    return tmp_path / "checkpoints"


def test_checkpoint_reads_back_exact_values_and_ignores_a_torn_line(folder):
    values = {0: [1 / 3, 2 / 3], 7: [np.nextafter(0.5, 1), 0.5 - 2**-53]}
    with Checkpoint("annotate", "k" * 64, 10, 2) as cp:
        assert cp.resumed == 0
        for i, v in values.items():
            cp.add(i, v)
        cp.note(score_warning="approximate")
    with open(cp.path, "a", encoding="utf-8") as fh:
        fh.write('{"i": 3, "v": [0.1')  # killed while writing
    again = Checkpoint("annotate", "k" * 64, 10, 2)
    assert again.done == values and again.meta == {"score_warning": "approximate"}
    again.add(3, [0.25, 0.75])
    again.close()
    assert Checkpoint("annotate", "k" * 64, 10, 2).done == values | {3: [0.25, 0.75]}
    other = Checkpoint("annotate", "k" * 64, 10, 3)  # other candidates: start again
    assert other.resumed == 0
    other.finish()
    assert not other.path.exists() and other.path.parent == folder == checkpoint_dir()


def per_cell(n: int) -> AnnotateOptions:
    rows = np.linspace(0, 699, n).astype(np.int64)
    return AnnotateOptions(candidates_from="cell_type", mode=MODE_PER_CELL, rows=rows, n_genes=30)


def test_an_interrupted_annotation_continues_and_equals_an_uninterrupted_one(gguf, folder):
    opts = per_cell(12)
    with open_dataset(DATA) as ds, LocalEngine(gguf("gptneox", "f32"), OPTIONS) as engine:
        clean = annotate(ds, engine, opts)
        assert clean.resumed_cells == 0 and not list(folder.glob("*.jsonl"))
        cancel = threading.Event()

        def stop_after_five(_: float, message: str) -> None:
            if message.startswith("5/12 cells scored"):
                cancel.set()

        with pytest.raises(Cancelled):
            annotate(ds, engine, opts, progress=stop_after_five, cancel=cancel)
        (saved,) = folder.glob("annotate-*.jsonl")
        seen: list[str] = []
        resumed = annotate(ds, engine, opts, progress=lambda f, m: seen.append(m))
    assert seen[0] == "resuming: 5 of 12 cells already scored"
    assert seen[-1].startswith("12/12 cells scored")
    assert resumed.resumed_cells == 5 and not saved.exists()
    assert np.array_equal(resumed.scored_probs, clean.scored_probs)
    assert list(resumed.labels) == list(clean.labels) and resumed.warnings == clean.warnings
    # another selection is another run: nothing resumed
    other = per_cell(11)
    with open_dataset(DATA) as ds, LocalEngine(gguf("gptneox", "f32"), OPTIONS) as engine:
        assert annotate(ds, engine, other).resumed_cells == 0


def annotate_cli(model: Path, cells: Path, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "c2s_desktop.cli", "annotate", str(DATA), "--model", str(model)]
    cmd += ["--candidates-from", "cell_type", "--mode", "per-cell", "--cells", str(cells)]
    cmd += ["--n-genes", "30", "--threads", "1", "--ctx", "512", "-o", str(out), "--overwrite"]
    return cmd


def test_killed_cli_annotation_resumes_to_the_same_output(gguf, folder, tmp_path):
    model = gguf("gptneox", "f32")
    with open_dataset(DATA) as ds:
        ids = ds.cell_ids[np.linspace(0, ds.n_cells - 1, 120).astype(np.int64)]
    cells = tmp_path / "cells.txt"
    cells.write_text("\n".join(map(str, ids)) + "\n")
    env = {**os.environ, CHECKPOINT_ENV: str(folder)}
    clean, out = tmp_path / "clean.h5ad", tmp_path / "resumed.h5ad"
    subprocess.run(annotate_cli(model, cells, clean), env=env, check=True, capture_output=True)
    proc = subprocess.Popen(
        annotate_cli(model, cells, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:  # kill once 30 cells are saved
        saved = list(folder.glob("annotate-*.jsonl"))
        if saved and saved[0].read_text().count("\n") > 30:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    (saved,) = folder.glob("annotate-*.jsonl")
    n_saved = saved.read_text().count("\n") - 1
    assert 30 <= n_saved < 120
    subprocess.run(annotate_cli(model, cells, out), env=env, check=True, capture_output=True)
    assert not saved.exists()
    want_rec, want_obs = annotation_record(clean)
    got_rec, got_obs = annotation_record(out)
    assert got_rec == want_rec
    assert got_obs.equals(want_obs)
