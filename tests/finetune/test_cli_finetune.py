"""``c2s finetune`` end to end, and its one-line refusals (exit 2, nothing written)."""

from __future__ import annotations

import shutil
import sys

import pytest

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


def test_finetune_prints_split_epochs_accuracy_and_writes_the_adapter(
    capsys, cells, checkpoints, tmp_path
):
    import torch

    torch.set_num_threads(1)
    out = tmp_path / "lab.gguf"
    args = ("finetune", cells, "--label-key", COLUMN, "--base", checkpoints["gptneox"])
    code, stdout, stderr = run(capsys, *args, "-o", out, "--epochs", "1", *QUICK)
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0].startswith("split: 27 training / 9 held-out cells, 3 labels (B cell 9/3,")
    assert any(line.startswith("epoch 1: step 4/4, loss ") for line in lines)
    assert any(line.startswith("held-out accuracy: before ") for line in lines)
    assert f"wrote {out}" in stderr and out.stat().st_size > 10_000
    code, _, stderr = run(capsys, *args, "-o", out, *QUICK)
    assert code == 2 and "already exists — pass --overwrite" in stderr


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
