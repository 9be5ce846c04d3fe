"""The window's guard before a model task: a dataset is open and the model is free, else the
status bar says which is missing (annotate and embed share it)."""

from __future__ import annotations

import threading

from c2s_desktop.gui.engine_host import MODEL_SLOT

BUSY = "The model is busy with another task: Cancel (Esc) stops it"


def test_without_a_dataset_each_task_names_itself(window):
    window.annotate.start()
    assert window.status.text() == "Open a dataset first, then annotate"
    window.embed_cells()
    assert window.status.text() == "Open a dataset first, then embed cells"
    assert not window.runner.is_busy(MODEL_SLOT)


def test_a_busy_model_is_not_given_a_second_task(qtbot, loaded):
    release = threading.Event()

    def hold(progress, cancel):  # noqa: ANN001, ANN202
        release.wait(10)

    job = loaded.runner.start(MODEL_SLOT, hold, on_success=lambda _: None, on_failure=print)
    try:
        for start in (loaded.annotate.start, loaded.embed_cells):
            loaded.status.setText("")
            start()
            assert loaded.status.text() == BUSY
            assert loaded.runner.current[MODEL_SLOT] is job
    finally:
        release.set()
        qtbot.waitUntil(lambda: not loaded.runner.is_busy(), timeout=10_000)
