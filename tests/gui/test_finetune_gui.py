"""Tasks ▸ Train on these labels…: the dialog on the real PBMC file, the split and its refusals,
a real LoRA run of the tiny GPT-NeoX checkpoint (cancelled mid-run, resumed), and the adapter
as the active model and in the model manager."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from c2s_desktop.core.finetune.workspace import adapter_path
from c2s_desktop.gui.export_dialog import model_of
from c2s_desktop.gui.panels.finetune import TRAIN_SLOT

LABEL = "cell_type"
TRAIN_LABELS = ("CD4+/CD45RO+ Memory", "CD8+/CD45RA+ Naive Cytotoxic")  # 19 + 43 cells


def _rows(window, labels) -> np.ndarray:
    values = window.dataset.obs[LABEL].astype(str).to_numpy()
    return np.flatnonzero(np.isin(values, labels)).astype(np.int64)


def _table(dialog) -> dict[str, tuple[int, int]]:
    t = dialog.split_table
    return {
        t.item(r, 0).text(): (int(t.item(r, 1).text()), int(t.item(r, 2).text()))
        for r in range(t.rowCount())
    }


def test_dialog_shows_the_split_and_refuses_one_class(qtbot, loaded):
    w = loaded
    assert w.annotate_panel.train_button.isVisible()
    assert w.annotate.finetune.action in w.menus["tasks"].actions()
    dialog = w.annotate.finetune.open_dialog()
    assert dialog is not None and dialog.isVisible()
    columns = [dialog.label_box.itemText(i) for i in range(dialog.label_box.count())]
    assert LABEL in columns and "n_counts" not in columns
    dialog.label_box.setCurrentText(LABEL)
    split = _table(dialog)
    counts = w.dataset.obs[LABEL].astype(str).value_counts()
    assert set(split) == set(counts.index)
    for label, (train, held) in split.items():
        assert train + held == counts[label] and held >= 1 and train >= 1
    assert dialog.train_button.isEnabled()
    assert "10 labels" in dialog.split_note.text()

    dialog.holdout.setValue(0.5)  # a new fraction: a new split
    assert _table(dialog)["Dendritic"] == (120, 120)

    # the cells of one label only: the core's refusal, in the dialog, and no training
    w.set_selection(_rows(w, ("Dendritic",)))
    dialog = w.annotate.finetune.open_dialog()
    dialog.scope_selection.setChecked(True)
    assert dialog.split_table.rowCount() == 0
    assert "only 'Dendritic'" in dialog.split_note.text()
    assert "at least two labels" in dialog.split_note.text()
    assert not dialog.train_button.isEnabled()
    assert not w.annotate.finetune.train()
    assert not w.runner.is_busy(TRAIN_SLOT)


def test_without_torch_the_action_says_how_to_enable_it(qtbot, loaded, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # as if peft were not installed
    controller = loaded.annotate.finetune
    assert controller.action.isEnabled()
    controller.action.trigger()
    box = controller.hint_box
    assert box is not None and box.isVisible()
    assert "c2s-desktop[train]" in box.informativeText() and "peft" in box.informativeText()
    assert controller.dialog is None
    box.close()


def test_adapter_names_never_overwrite(tmp_path):
    first = adapter_path("demo model", "cell type", tmp_path)
    assert first.name == "demo_model-cell_type.gguf"
    first.write_bytes(b"x")
    assert adapter_path("demo model", "cell type", tmp_path).name == "demo_model-cell_type-2.gguf"


@pytest.mark.slow
def test_train_cancel_resume_and_use_the_adapter(
    qtbot, loaded, make_window, models_dir, checkpoints, gguf, tmp_path, monkeypatch
):
    from c2s_desktop.core.adapters import adapters_dir, read_adapter
    from c2s_desktop.gui.engine_host import RunOptions

    monkeypatch.setenv("C2S_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    w = loaded
    w.engine_host.set_options(RunOptions(threads=1))
    models_dir.mkdir(parents=True, exist_ok=True)
    base_gguf = Path(shutil.copy(gguf("gptneox", "f32"), models_dir / "tiny-gptneox.gguf"))
    assert w.load_model(base_gguf)
    qtbot.waitUntil(lambda: w.engine_host.is_loaded() and not w.runner.is_busy(), timeout=30_000)

    rows = _rows(w, TRAIN_LABELS)
    w.set_selection(rows)
    controller = w.annotate.finetune
    dialog = controller.open_dialog()
    dialog.label_box.setCurrentText(LABEL)
    dialog.scope_selection.setChecked(True)
    dialog.set_base(checkpoints["gptneox"])
    dialog.epochs.setValue(1)
    dialog.n_genes.setValue(32)
    assert _table(dialog) == {TRAIN_LABELS[0]: (15, 4), TRAIN_LABELS[1]: (34, 9)}
    assert dialog.estimate.text().startswith("7 steps.")  # 49 cells, batches of 8

    # the time estimate from one measured step (in a child process)
    dialog.measure_button.click()
    qtbot.waitUntil(lambda: "≈" in dialog.estimate.text(), timeout=60_000)
    assert dialog.estimate.text().startswith("7 steps ×")
    assert controller.remembered_base() == checkpoints["gptneox"]  # remembered for this model

    # train, watch steps arrive, cancel mid-run: the window answers, a checkpoint is kept
    assert controller.train()
    qtbot.waitUntil(lambda: len(dialog.steps) >= 1, timeout=60_000)
    assert dialog.last.total_steps == 7 and len(dialog.loss_curve.getData()[0]) >= 1
    controller.cancel()
    w.clear_selection()  # the window is responsive while the run stops
    assert not len(w.selection.current)
    qtbot.waitUntil(lambda: not dialog.cancel_button.isEnabled(), timeout=30_000)  # ended
    assert not w.runner.is_busy(TRAIN_SLOT)
    assert dialog.steps[-1][0] < 7
    assert "Train again" in dialog.train_button.text()
    assert "checkpoint is kept" in dialog.progress_label.text(), dialog.progress_label.text()
    assert controller.result is None
    assert list((tmp_path / "checkpoints").glob("finetune-*.pt"))
    assert not controller.request.out_path.exists()  # a cancelled run writes no adapter

    # Train again resumes from the checkpoint and finishes; the adapter becomes the model
    w.set_selection(rows)
    dialog.scope_selection.setChecked(True)
    assert controller.train()
    qtbot.waitUntil(lambda: controller.result is not None, timeout=120_000)
    result = controller.result
    assert result.resumed_step > 0 and result.steps == 7
    assert dialog.steps[0][0] == result.resumed_step + 1
    assert Path(result.adapter_path).parent == adapters_dir()
    assert dialog.accuracy  # held-out accuracy at the epoch's end
    assert f"{result.accuracy_after:.0%}" in dialog.result_label.text()
    qtbot.waitUntil(
        lambda: w.engine_host.is_loaded() and w.engine_host.adapter is not None, timeout=30_000
    )
    assert w.engine_host.adapter == Path(result.adapter_path)
    assert w.engine_host.path == base_gguf
    assert Path(result.adapter_path).stem in w.engine_host.state_text()
    info = read_adapter(result.adapter_path)
    assert info.label_key == LABEL and set(info.labels) == set(TRAIN_LABELS)
    # results made now name the adapter and its hash; annotate offers the trained labels
    digest = hashlib.sha256(Path(result.adapter_path).read_bytes()).hexdigest()
    qtbot.waitUntil(lambda: w.engine_host.model_record()["adapter_sha256"] == digest)
    record = model_of(w.engine_host.model_record())
    assert record.adapter == str(result.adapter_path) and record.adapter_sha256 == digest
    assert w.annotate_panel.candidates_obs.currentText() == LABEL
    assert set(w.annotate_panel.candidates()) == set(w.dataset.obs[LABEL].astype(str))

    # the next start loads the remembered model with its adapter
    again = make_window()
    qtbot.waitUntil(lambda: again.engine_host.is_loaded(), timeout=30_000)
    assert again.engine_host.adapter == Path(result.adapter_path)
    again.close()

    # the model manager lists it under its base, marked active; remove takes it away
    manager = w.show_model_manager()
    qtbot.waitUntil(lambda: manager.select_path(base_gguf), timeout=10_000)
    assert [Path(a.path) for a in manager.adapters] == [Path(result.adapter_path)]
    assert manager.adapter_table.item(0, 0).text() == "●"
    qtbot.waitUntil(lambda: not w.runner.is_busy(), timeout=30_000)
    manager.remove_adapter(manager.adapters[0])
    assert not Path(result.adapter_path).exists()
    assert manager.adapters == [] and w.engine_host.adapter is None


@pytest.mark.slow
def test_base_from_the_loaded_gguf_and_closing_while_training(
    qtbot, loaded, gguf, tmp_path, monkeypatch
):
    from c2s_desktop.gui.engine_host import RunOptions

    monkeypatch.setenv("C2S_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    w = loaded
    w.engine_host.set_options(RunOptions(threads=1))
    assert w.load_model(gguf("gptneox", "f32"))
    qtbot.waitUntil(lambda: w.engine_host.is_loaded() and not w.runner.is_busy(), timeout=30_000)
    w.set_selection(_rows(w, TRAIN_LABELS))
    controller = w.annotate.finetune
    dialog = controller.open_dialog()
    assert dialog.base_dir() is None and dialog.export_button.isEnabled()
    dialog.export_button.click()  # a checkpoint folder made from the GGUF, in a child process
    qtbot.waitUntil(lambda: dialog.base_dir() is not None, timeout=60_000)
    base = dialog.base_dir()
    assert (base / "config.json").is_file() and (base / "c2s_source.json").is_file()
    assert controller.remembered_base() == base
    dialog.export_button.click()  # made once: the same folder again, at once
    qtbot.waitUntil(lambda: not w.runner.is_busy(), timeout=10_000)
    assert dialog.base_dir() == base

    dialog.label_box.setCurrentText(LABEL)
    dialog.scope_selection.setChecked(True)
    dialog.n_genes.setValue(32)
    assert controller.train()
    qtbot.waitUntil(lambda: len(dialog.steps) >= 1, timeout=60_000)
    w.close()  # the run stops and saves its checkpoint before the window goes
    assert not w.runner.is_busy(TRAIN_SLOT)
    assert list((tmp_path / "checkpoints").glob("finetune-*.pt"))
