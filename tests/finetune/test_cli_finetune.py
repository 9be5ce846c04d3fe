"""``c2s finetune`` end to end, and its one-line refusals (exit 2, nothing written)."""

from __future__ import annotations

import csv
import json
import shutil
import sys

import pytest

from c2s_desktop.core.dataset import open_dataset
from c2s_desktop.core.finetune import FinetuneOptions, plan_split
from tests.test_cli import run

from .labelled_cells import labelled_h5ad

COLUMN = "lab_label"
QUICK = ("--holdout", "0.25", "--n-genes", "20", "--threads", "1", "--lr", "1e-2")


@pytest.fixture(autouse=True)
def own_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("C2S_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    return labelled_h5ad(tmp_path_factory.mktemp("cli_cells") / "cells.h5ad")


def test_finetune_then_annotate_with_the_adapter(capsys, cells, checkpoints, gguf, tmp_path):
    """The printed run, then ``c2s annotate --adapter`` in llama.cpp on the held-out cells: its
    accuracy is the held-out accuracy transformers + peft measured after training."""
    import torch
    from gguf import GGUFReader

    torch.set_num_threads(1)
    out = tmp_path / "lab.gguf"
    args = ("finetune", cells, "--label-key", COLUMN, "--base", checkpoints["gptneox"])
    code, stdout, stderr = run(capsys, *args, "-o", out, "--epochs", "4", *QUICK)
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0].startswith("split: 27 training / 9 held-out cells, 3 labels (B cell 9/3,")
    assert [line.split(",")[0] for line in lines if line.startswith("epoch ")] == [
        f"epoch {e}: step {4 * e}/16" for e in (1, 2, 3, 4)
    ]
    assert any(line.startswith("held-out accuracy: before ") for line in lines)
    assert f"wrote {out}" in stderr and out.stat().st_size > 10_000
    code, _, stderr = run(capsys, *args, "-o", out, *QUICK)
    assert code == 2 and "already exists — pass --overwrite" in stderr

    reader = GGUFReader(out)
    after = json.loads(reader.fields["c2s.adapter.provenance"].contents())["accuracy_after"]
    options = FinetuneOptions(label_key=COLUMN, holdout=0.25)
    with open_dataset(cells) as ds:
        held = plan_split(ds, options).holdout_rows
        ids = [str(ds.cell_ids[i]) for i in held]
        truth = dict(zip(ids, ds.obs[COLUMN].astype(str).to_numpy()[list(held)], strict=True))
    (tmp_path / "held.txt").write_text("\n".join(ids) + "\n")
    table = tmp_path / "labels.csv"
    code, _, stderr = run(
        capsys, "annotate", cells, "-m", gguf("gptneox", "f32"), "--adapter", out,
        "--candidates-from", COLUMN, "--mode", "per-cell", "--cells", tmp_path / "held.txt",
        "--n-genes", "20", "--threads", "1", "-o", tmp_path / "a.h5ad", "--csv", table,
    )  # fmt: skip
    assert code == 0, stderr
    with open(table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 9
    correct = sum(r["c2s_cell_type"] == truth[r["cell_id"]] for r in rows)
    assert correct / 9 == pytest.approx(after) and after >= 2 / 3


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--label-key", "nope"), "no obs column 'nope' — available: lab_label, batch"),
        (("--label-key", "batch"), "column 'batch' has only 'b1'; fine-tuning needs at least two"),
        (
            ("--label-key", COLUMN, "--cells", "rare.txt"),
            "too few cells for the split in column 'lab_label' of cells",
        ),
    ],
)
def test_bad_labels_are_one_line(capsys, cells, checkpoints, tmp_path, extra, message):
    (tmp_path / "rare.txt").write_text("cell0\ncell1\ncell12\ncell24\ncell25\n")
    out = tmp_path / "a.gguf"
    extra = tuple(str(tmp_path / e) if e == "rare.txt" else e for e in extra)
    code, stdout, stderr = run(
        capsys, "finetune", cells, *extra, "--base", checkpoints["gptneox"], "-o", out
    )
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1
    assert not out.exists() and not stdout


def test_bad_base_and_missing_torch_are_one_line(capsys, cells, checkpoints, tmp_path, monkeypatch):
    base = tmp_path / "base"
    shutil.copytree(checkpoints["gptneox"], base, ignore=shutil.ignore_patterns("*.safetensors"))
    out = tmp_path / "a.gguf"
    args = ("finetune", cells, "--label-key", COLUMN, "-o", out)
    code, _, stderr = run(capsys, *args, "--base", base)
    assert code == 2 and f"{base}: has no .safetensors weights" in stderr
    monkeypatch.setitem(sys.modules, "peft", None)  # as if the train extra were not installed
    code, _, stderr = run(capsys, *args, "--base", checkpoints["gptneox"])
    assert code == 2 and "pip install 'c2s-desktop[train]'" in stderr
    assert len(stderr.strip().splitlines()) == 1 and not out.exists()
