"""Model manager and toolbar picker: list, load (remembered), import, convert, download asks
first and names the host, run options."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QMessageBox

from c2s_desktop.core.model_store import demo_model_path
from c2s_desktop.gui.engine_host import physical_cores, process_rss

T = 30_000
DEMO = demo_model_path()


def idle(qtbot, w):
    qtbot.waitUntil(lambda: not w.runner.is_busy(), timeout=T)


def open_manager(qtbot, window):
    manager = window.show_model_manager()
    idle(qtbot, window)
    return manager


def test_manager_lists_demo_model_with_hash_and_loads_it(qtbot, window):
    assert window.model_picker.text() == "Model: no model"
    manager = open_manager(qtbot, window)
    assert manager.table.rowCount() == 1
    assert manager.table.item(0, 1).text() == "demo-pbmc-tiny"
    assert manager.table.item(0, 2).text() == "Q8_0"
    assert manager.table.item(0, 4).text() == "c2s-desktop/demo-pbmc-tiny · bundled demo model"
    assert len(manager.table.item(0, 6).toolTip()) == 64  # sha256 shown once hashed
    assert manager.catalog_table.rowCount() >= 7
    manager.select_path(DEMO)
    manager.load_button.click()
    qtbot.waitUntil(window.engine_host.is_loaded, timeout=T)
    idle(qtbot, window)
    host = window.engine_host
    text = window.model_picker.text()
    assert text.startswith("Model: demo-pbmc-tiny Q8_0 ● loaded, CPU")
    assert f"{physical_cores()} thr" in text and "MB" in text
    assert host.sha256 is not None and len(host.sha256) == 64
    assert process_rss(host.pid) > 1_000_000  # the model process's own memory
    assert manager.table.item(0, 0).text() == "●"
    assert window.settings.value("model/path") == str(DEMO)


def test_remembered_model_loads_at_next_start(qtbot, make_window):
    first = make_window()
    assert first.load_model(DEMO)
    qtbot.waitUntil(first.engine_host.is_loaded, timeout=T)
    first.close()
    second = make_window()
    qtbot.waitUntil(second.engine_host.is_loaded, timeout=T)  # small: loaded at start
    assert second.engine_host.path == DEMO


def test_import_validates_and_copies(qtbot, window, models_dir, tmp_path):
    manager = open_manager(qtbot, window)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 40)
    manager.import_file(bad)
    idle(qtbot, window)
    assert (
        manager.last_box is not None
        and "Importing bad.gguf failed" in manager.last_box.windowTitle()
    )
    assert not (models_dir / "bad.gguf").exists()
    mine = tmp_path / "mine.q8_0.gguf"
    mine.write_bytes(DEMO.read_bytes())
    manager.import_file(mine)
    idle(qtbot, window)
    assert (models_dir / mine.name).is_file() and mine.is_file()
    names = [manager.table.item(r, 7).text() for r in range(manager.table.rowCount())]
    assert names == [DEMO.name, mine.name]
    assert "Added mine.q8_0.gguf" in manager.job_label.text()
    manager.remove(manager.models[1])
    idle(qtbot, window)
    assert manager.table.rowCount() == 1 and not (models_dir / mine.name).exists()


def test_convert_local_checkpoint_folder(qtbot, window, models_dir, tmp_path):
    pytest.importorskip("torch")
    from tests.quantize import quantize_builders as qb

    ckpt = tmp_path / "tiny-neox"
    qb.save_gptneox(ckpt, qb.train_bpe_tokenizer(ckpt, vocab_size=400), num_hidden_layers=1)
    manager = open_manager(qtbot, window)
    manager.quant_box.setCurrentText("q8_0")
    manager.convert_folder(ckpt, manager.quant_box.currentText())
    assert manager.job_bar.isVisible()
    idle(qtbot, window)
    out = models_dir / "tiny-neox.q8_0.gguf"
    assert out.is_file(), manager.job_label.text()
    rows = {manager.table.item(r, 7).text(): r for r in range(manager.table.rowCount())}
    assert manager.table.item(rows[out.name], 2).text() == "Q8_0"
    assert manager.table.item(rows[out.name], 4).text() == "tiny-neox"  # provenance: source


def test_download_asks_first_naming_the_host(qtbot, window, models_dir, monkeypatch):
    from huggingface_hub import constants

    # an endpoint on loopback where nothing listens: the flow runs, nothing leaves the machine
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    manager = open_manager(qtbot, window)
    repo = manager.catalog[0].repo
    box = manager.ask_download(repo, "q4_k_m")
    assert "127.0.0.1:9" in box.text() and repo in box.text()
    assert "licence" in box.informativeText().lower()
    box.button(QMessageBox.StandardButton.Cancel).click()
    assert not window.runner.is_busy("model-store")  # declined: nothing started
    box = manager.ask_download(repo, "q4_k_m")
    next(b for b in box.buttons() if b.text() == "Download").click()
    assert window.runner.is_busy("model-store")
    idle(qtbot, window)
    error = manager.last_box
    assert error is not None and error is not box
    assert "cannot reach the Hugging Face Hub" in error.text()
    assert not list(models_dir.glob("*.gguf"))


def test_run_options_apply_on_reload(qtbot, window):
    manager = open_manager(qtbot, window)
    assert manager.threads_spin.value() == 0  # auto = physical cores
    assert not manager.gpu_spin.isEnabled()  # CPU build of llama.cpp
    assert window.load_model(DEMO)
    qtbot.waitUntil(window.engine_host.is_loaded, timeout=T)
    idle(qtbot, window)
    manager.threads_spin.setValue(1)
    manager.ctx_spin.setValue(512)
    manager.apply_button.click()
    qtbot.waitUntil(lambda: "1 thr" in window.model_picker.text(), timeout=T)
    idle(qtbot, window)
    assert window.engine_host.engine().n_ctx == 512
    assert int(window.settings.value("model/threads")) == 1
