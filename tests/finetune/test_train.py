"""Fine-tuning core: the split, bad input, training that learns a new label set, resume after
an interrupt, the adapter file it writes, the child-process runner."""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from c2s_desktop.core.dataset import open_dataset
from c2s_desktop.core.errors import Cancelled, DataError, InputFileError, OutputError
from c2s_desktop.core.finetune import (
    FinetuneOptions,
    check_base,
    finetune,
    plan_split,
    run_finetune_process,
    train_available,
)
from c2s_desktop.core.finetune.base import TrainingUnavailable

from .labelled_cells import LABELS, labelled_h5ad

COLUMN = "lab_label"
# Small and quick: 27 training cells, 9 held out, 20 genes, one torch thread.
FAST = FinetuneOptions(
    label_key=COLUMN, holdout=0.25, epochs=4, lr=1e-2, n_genes=20, threads=1, device="cpu"
)


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    return labelled_h5ad(tmp_path_factory.mktemp("cells") / "cells.h5ad")


@pytest.fixture(autouse=True)
def own_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("C2S_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))


@pytest.fixture(scope="module")
def trained(cells, checkpoints, tmp_path_factory):
    """One uninterrupted run on GPT-NeoX, with the merged checkpoint and the step reports."""
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("trained")
    reports = []
    result = finetune(
        cells, checkpoints["gptneox"], out / "a.gguf", FAST,
        on_step=reports.append, merge_dir=out / "merged",
    )  # fmt: skip
    return result, reports


def test_split_is_stratified_seeded_and_disjoint(cells):
    with open_dataset(cells) as ds:
        plan = plan_split(ds, FAST)
        again = plan_split(ds, FAST)
        other = plan_split(ds, FinetuneOptions(label_key=COLUMN, holdout=0.25, seed=1))
        labels = ds.obs[COLUMN].astype(str).to_numpy()
    assert plan.labels == tuple(sorted(LABELS))
    assert plan.train_counts == (9, 9, 9) and plan.holdout_counts == (3, 3, 3)
    assert not set(plan.train_rows) & set(plan.holdout_rows)
    assert len(plan.train_rows) + len(plan.holdout_rows) == 36
    for lab, n in zip(plan.labels, plan.holdout_counts, strict=True):
        assert sum(labels[i] == lab for i in plan.holdout_rows) == n
    assert again == plan and other.holdout_rows != plan.holdout_rows


def test_split_refuses_bad_choices(cells, tmp_path):
    with open_dataset(cells) as ds:
        with pytest.raises(DataError, match="no obs column 'missing'.*available: lab_label"):
            plan_split(ds, FinetuneOptions(label_key="missing"))
        with pytest.raises(DataError, match="only 'b1'.*at least two labels"):
            plan_split(ds, FinetuneOptions(label_key="batch"))
        with pytest.raises(DataError, match="only 'B cell'"):
            plan_split(ds, FinetuneOptions(label_key=COLUMN, cells=f"{COLUMN}=B cell"))
        with pytest.raises(DataError, match="between 0 and 1"):
            plan_split(ds, FinetuneOptions(label_key=COLUMN, holdout=1.0))
    rare = labelled_h5ad(tmp_path / "rare.h5ad", per_label=1)
    with open_dataset(rare) as ds, pytest.raises(DataError, match="too few cells for the split"):
        plan_split(ds, FinetuneOptions(label_key=COLUMN))


def test_base_without_weights_or_config_is_refused(checkpoints, tmp_path, cells):
    no_weights = tmp_path / "no_weights"
    shutil.copytree(checkpoints["gptneox"], no_weights, ignore=shutil.ignore_patterns("*.safet*"))
    with pytest.raises(InputFileError, match="no .safetensors weights"):
        check_base(no_weights)
    no_config = tmp_path / "no_config"
    shutil.copytree(checkpoints["gptneox"], no_config, ignore=shutil.ignore_patterns("config*"))
    with pytest.raises(InputFileError, match="no config.json"):
        check_base(no_config)
    assert check_base(checkpoints["gemma2"]).target_modules == (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
    )
    out = tmp_path / "a.gguf"
    with pytest.raises(InputFileError, match="no .safetensors"):
        finetune(cells, no_weights, out, FAST)
    assert not out.exists()


def test_existing_output_and_missing_peft(cells, checkpoints, tmp_path, monkeypatch):
    out = tmp_path / "a.gguf"
    out.write_bytes(b"keep")
    with pytest.raises(OutputError, match="already exists"):
        finetune(cells, checkpoints["gptneox"], out, FAST, overwrite=False)
    assert out.read_bytes() == b"keep"
    assert train_available() is None
    monkeypatch.setitem(sys.modules, "peft", None)  # as if peft were not installed
    assert "pip install 'c2s-desktop[train]'" in (train_available() or "")
    with pytest.raises(TrainingUnavailable, match=r"c2s-desktop\[train\]"):
        finetune(cells, checkpoints["gptneox"], tmp_path / "b.gguf", FAST)
    assert not (tmp_path / "b.gguf").exists()


def test_training_learns_the_new_labels(trained):
    result, reports = trained
    assert result.steps == 16 and [r.step for r in reports] == list(range(1, 17))
    epochs = [r for r in reports if r.heldout_accuracy is not None]
    assert [r.step for r in epochs] == [4, 8, 12, 16]  # 27 cells / 8 per step
    assert result.accuracy_after == epochs[-1].heldout_accuracy
    # the swapped names are new to the model: near or below chance before, learned after
    assert result.accuracy_before < 0.5 and result.accuracy_after >= 2 / 3
    assert result.accuracy_after > result.accuracy_before
    assert result.losses[-1] < result.losses[0] / 4


def test_adapter_file_names_its_base_labels_and_provenance(trained, checkpoints):
    from gguf import GGUFReader

    result, _ = trained
    reader = GGUFReader(result.adapter_path)

    def text(key):
        return reader.fields[key].contents()

    assert text("general.type") == "adapter" and text("general.architecture") == "gptneox"
    assert text("c2s.adapter.label_key") == COLUMN
    assert text("c2s.adapter.labels") == sorted(LABELS)
    names = {t.name for t in reader.tensors}
    assert "blk.0.attn_qkv.weight.lora_a" in names and "blk.1.attn_output.weight.lora_b" in names
    prov = json.loads(text("c2s.adapter.provenance"))
    assert prov["accuracy_before"] == result.accuracy_before
    assert prov["accuracy_after"] == result.accuracy_after
    assert prov["split"]["holdout"] == dict.fromkeys(sorted(LABELS), 3)
    assert prov["options"]["rank"] == 8 and len(prov["data"]["sha256"]) == 64
    assert prov["n_genes"] == 20 and prov["template"].endswith("cell_type_prediction/0")
    assert result.adapter_bytes == result.adapter_path.stat().st_size
    assert (result.merged_dir / "config.json").is_file()
    assert any(result.merged_dir.glob("*.safetensors"))
    # Readable by the lab like any new file (not the owner-only mode of a temporary folder).
    umask = os.umask(0)
    os.umask(umask)
    assert result.merged_dir.stat().st_mode & 0o777 == 0o777 & ~umask
    for f in result.merged_dir.iterdir():
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, f.name


def test_interrupted_run_resumes_from_its_checkpoint(cells, checkpoints, trained, tmp_path):
    import torch

    torch.set_num_threads(1)
    stop = threading.Event()
    seen = []

    def on_step(report):
        seen.append(report.step)
        if report.step == 6:
            stop.set()

    out = tmp_path / "a.gguf"
    with pytest.raises(Cancelled):
        finetune(cells, checkpoints["gptneox"], out, FAST, cancel=stop, on_step=on_step)
    assert seen[-1] == 6 and not out.exists()
    assert len(list((tmp_path / "checkpoints").glob("finetune-*.pt"))) == 1
    steps = []
    result = finetune(
        cells, checkpoints["gptneox"], out, FAST, on_step=lambda r: steps.append(r.step)
    )
    assert result.resumed_step == 6 and steps == list(range(7, 17))
    full, _ = trained  # the same run uninterrupted
    np.testing.assert_allclose(result.losses, full.losses, rtol=1e-4)
    assert result.accuracy_before == full.accuracy_before
    assert result.accuracy_after == full.accuracy_after
    assert not list((tmp_path / "checkpoints").glob("finetune-*.pt"))  # done: removed


def test_gemma2_child_process_cancels_keeping_its_checkpoint(cells, checkpoints, tmp_path):
    out = tmp_path / "g.gguf"
    options = FinetuneOptions(
        label_key=COLUMN, holdout=0.25, n_genes=20, threads=1, max_steps=6, batch_size=4
    )
    stop, first = threading.Event(), []  # the child stops after the step it is in
    messages = []
    with pytest.raises(Cancelled):
        run_finetune_process(
            cells, checkpoints["gemma2"], out, options, cancel=stop,
            on_step=lambda r: (first.append(r.step), stop.set()),
            progress=lambda f, m: messages.append(m),
        )  # fmt: skip
    assert any("loss" in m for m in messages)
    assert first[0] == 1 and first[-1] < 6 and not out.exists()
    assert len(list((tmp_path / "checkpoints").glob("finetune-*.pt"))) == 1
    reports = []  # the child's checkpoint resumes here too
    result = finetune(cells, checkpoints["gemma2"], out, options, on_step=reports.append)
    assert [r.step for r in reports] == list(range(first[-1] + 1, 7))
    assert reports[-1].heldout_accuracy is not None
    assert result.resumed_step == first[-1] and result.steps == 6 and out.is_file()
    with pytest.raises(DataError, match="no obs column 'nope'"):
        run_finetune_process(cells, checkpoints["gemma2"], out, FinetuneOptions(label_key="nope"))


@pytest.mark.parametrize("arch", ["gptneox", "gemma2"])
def test_cached_label_scores_equal_whole_sequence_scores(cells, hf, arch):
    """The shared-prompt KV cache (Gemma-2's sliding window of 16 is shorter than the prompt)
    gives the scores of running each label's whole sequence."""
    from c2s_desktop.core.finetune.examples import ExampleBuilder
    from c2s_desktop.core.finetune.scoring import label_logprobs
    from c2s_desktop.core.sentences import cell_sentences

    tokenizer, model = hf(arch)
    with open_dataset(cells) as ds:
        sentences = cell_sentences(ds, np.array([0, 13, 30]), top_k=20)
        organism = ds.organism
    build = ExampleBuilder(tokenizer, sorted(LABELS), organism, 20, 512)
    examples = [build(s) for s in sentences]
    pad = tokenizer.pad_token_id
    cached = label_logprobs(model, examples, "cpu", pad)
    whole = label_logprobs(model, examples, "cpu", pad, cached=False)
    assert cached.shape == (3, 3) and np.all(whole < 0)
    np.testing.assert_allclose(cached, whole, atol=1e-4)


def test_measure_step_times_a_step_and_writes_nothing(cells, checkpoints, tmp_path):
    from c2s_desktop.core.finetune import measure_step

    seconds = measure_step(cells, checkpoints["gptneox"], FAST)
    assert np.isfinite(seconds) and seconds > 0.0
    assert not (tmp_path / "checkpoints").exists()


def test_gguf_base_is_exported_to_a_checkpoint_first(cells, gguf, tmp_path):
    from gguf import GGUFReader

    out = tmp_path / "a.gguf"
    options = FinetuneOptions(label_key=COLUMN, holdout=0.25, n_genes=20, threads=1, max_steps=1)
    result = finetune(cells, gguf("gptneox", "f32"), out, options)
    assert result.steps == 1 and out.is_file()
    reader = GGUFReader(out)
    assert reader.fields["general.architecture"].contents() == "gptneox"
    prov = json.loads(reader.fields["c2s.adapter.provenance"].contents())
    assert prov["base"]["architecture"] == "GPTNeoXForCausalLM"
    exported = Path(prov["base"]["path"])
    assert exported.name == "gptneox.f32" and not exported.exists()  # a temporary export
