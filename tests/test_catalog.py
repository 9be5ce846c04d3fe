"""Each model's task list has one home: c2s-quantize's catalogue, read by the app's catalog."""

from __future__ import annotations

from c2s_desktop.core.catalog import ALL_TASKS, DEMO_MODEL, MODEL_TASKS, capabilities
from c2s_quantize.catalog import load_catalog


def test_every_released_model_names_its_app_tasks_and_genes():
    for entry in load_catalog():
        assert entry.app_tasks, entry.hf_repo
        assert set(entry.app_tasks) <= set(ALL_TASKS), entry.hf_repo
        assert isinstance(entry.n_genes, int) and entry.n_genes > 0, entry.hf_repo


def test_app_capabilities_come_from_the_catalogue():
    entries = load_catalog()
    assert set(MODEL_TASKS) == {e.hf_repo for e in entries} | {DEMO_MODEL}
    for entry in entries:
        caps = capabilities({"c2s.source_repo": entry.hf_repo.upper()})
        assert caps.known
        assert caps.tasks == frozenset(entry.app_tasks)
        assert caps.n_genes == entry.n_genes


def test_warning_names_the_models_trained_for_the_task():
    caps = capabilities({"c2s.source_repo": "vandijklab/C2S-Pythia-410m-cell-type-prediction"})
    assert caps.warning_for("annotate") == ""
    warning = caps.warning_for("ask")
    assert "vandijklab/C2S-Scale-Gemma-2-2B" in warning
    assert "C2S-Pythia-410m-cell-type-prediction was not trained for 'ask'" in warning
