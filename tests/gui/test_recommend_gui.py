"""Model manager: measure the installed types of a model here and show the recommended one."""

from __future__ import annotations

import shutil

from c2s_desktop.core import recommend
from c2s_desktop.core.model_store import demo_model_path

T = 60_000


def test_measure_types_shows_seconds_per_cell_and_the_recommendation(
    qtbot, window, models_dir, gguf, tmp_path, monkeypatch
):
    monkeypatch.setattr(recommend, "cache_path", lambda: tmp_path / recommend.CACHE_FILE)
    models_dir.mkdir(parents=True, exist_ok=True)
    for qtype in ("q8_0", "q4_0"):
        shutil.copy(gguf("gptneox", qtype), models_dir / f"tiny.{qtype}.gguf")
    window.engine_host.set_options(type(window.engine_host.options)(threads=1))
    manager = window.show_model_manager()
    qtbot.waitUntil(lambda: not window.runner.is_busy(), timeout=T)
    assert manager.select_path(models_dir / "tiny.q4_0.gguf")
    manager.recommend_button.click()
    qtbot.waitUntil(lambda: "Recommended here" in manager.recommend_label.text(), timeout=T)
    text = manager.recommend_label.text()
    assert "Q8_0" in text and "Q4_0" in text  # both types measured, the demo model not
    assert text.count("s/cell") >= 3  # the summary and one per type
    assert "labels 3/3" in text  # the reference agrees with itself
    assert "demo" not in text and demo_model_path().exists()
    assert "Recommended type for this machine: Q" in manager.job_label.text()
    # a second measurement of the same files is remembered, not measured again
    monkeypatch.setattr(recommend, "_measure", lambda *a, **k: (_ for _ in ()).throw(OSError))
    qtbot.waitUntil(lambda: not window.runner.is_busy(), timeout=T)  # the first job has ended
    manager.recommend_button.click()
    qtbot.waitUntil(lambda: "(remembered)" in manager.recommend_label.text(), timeout=T)
