"""Prompt templates: verbatim upstream files, deterministic choice, exact formatting."""

from __future__ import annotations

import hashlib

import pytest

from c2s_desktop.core import prompts as P
from c2s_desktop.core.catalog import ANNOTATE, SUMMARIZE, capabilities
from c2s_desktop.core.errors import DataError
from c2s_desktop.core.resources import resource_path

SHA256 = {  # of the upstream files, as recorded in resources/prompts/README.md
    "single_cell_cell_type_prediction_prompts.json": (
        "84580e647c29a0467f93e66531ab3c276b2b3ea8c1a77332e090c1df5dc44fa4"
    ),
    "multi_cell_natural_lang_interpretation_prompts.json": (
        "45961742283a0fd4f54e8ed65318501f361534cea90418ce29dfd82521337887"
    ),
}


def test_template_files_are_unmodified_upstream_copies():
    for name, digest in SHA256.items():
        data = resource_path("prompts", name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest


def test_cell_type_prompt_is_template_zero_exactly():
    t = P.template(P.CELL_TYPE_PREDICTION)
    text = t.format(
        **P.prompt_values(organism="Homo sapiens", n_genes=3, sentence="CD3E CD3D IL7R LTB")
    )
    assert t.id == "cell2sentence-1.2.0/cell_type_prediction/0"
    assert text == (
        "The following is a list of 3 gene names ordered by descending expression level in a "
        "Homo sapiens cell. Your task is to give the cell type which this cell belongs to based "
        "on its gene expression.\nCell sentence: CD3E CD3D IL7R.\n"
        "The cell type corresponding to these genes is:"
    )
    assert P.label_continuation("CD8-positive, alpha-beta T cell") == (
        " CD8-positive, alpha-beta T cell."
    )


def test_multi_cell_block_keeps_the_upstream_period_line():
    t = P.template(P.NL_INTERPRETATION)
    text = t.format(**P.prompt_values(organism="Mus musculus", n_genes=2, sentences=["A B C", "D"]))
    assert "Cell 1:\nA B.\nCell 2:\nD.\n.\n" in text and text.endswith("Abstract summary:")


def test_clean_label():
    assert P.clean_label(" B cell.\nsomething else") == "B cell"
    assert P.clean_label("CD8-positive, alpha-beta T cell.") == "CD8-positive, alpha-beta T cell"


def test_template_errors(tmp_path):
    with pytest.raises(DataError, match="templates 0..14"):
        P.template(P.CELL_TYPE_PREDICTION, 99)
    bad = tmp_path / "t.txt"
    bad.write_text("Genes: {cell_sentence} {nonsense}")
    with pytest.raises(DataError, match="nonsense"):
        P.load_custom_template(bad)
    good = tmp_path / "g.txt"
    good.write_text("Perturb {cell_type}: {cell_sentence}.\nAnswer:")
    assert P.load_custom_template(good).fields == {"cell_type", "cell_sentence"}


def test_capabilities_warn_for_untrained_tasks():
    caps = capabilities({"c2s.source_repo": "vandijklab/C2S-Pythia-410m-cell-type-prediction"})
    assert caps.known and caps.n_genes == 200
    assert caps.warning_for(ANNOTATE) == ""
    warning = caps.warning_for(SUMMARIZE)
    assert "not trained" in warning and "C2S-Scale-Gemma-2-2B".lower() in warning.lower()
    unknown = capabilities({})
    assert not unknown.known and unknown.warning_for(SUMMARIZE) == ""


def test_custom_template_with_stray_braces_is_refused(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text('JSON: {"type": 1} {cell_sentence}')
    with pytest.raises(DataError):
        P.load_custom_template(p)
    p.write_text('JSON: {{"type": 1}} {cell_sentence}')
    assert P.load_custom_template(p).fields >= {"cell_sentence"}
