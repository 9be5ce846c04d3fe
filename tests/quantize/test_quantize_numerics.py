"""Converted GGUFs against transformers: token ids, logits, top-1 and label agreement.

Logits are raw pre-softmax scores; the reported logit scale is the largest |logit| of the
transformers reference (about 10-15 for these briefly trained tiny models).
"""

from __future__ import annotations

import pytest
import quantize_builders as qb
from conftest import ARCHS

from c2s_quantize.llama_lm import LlamaLM


@pytest.mark.parametrize("arch", ARCHS)
def test_token_ids_identical_to_transformers_on_cell_sentences(arch, versus_hf):
    report = versus_hf(arch, "f32")
    assert report.tokenization_identical, [p.name for p in report.probes if not p.tokens_identical]


@pytest.mark.parametrize("arch", ARCHS)
def test_token_ids_identical_on_awkward_text(arch, checkpoints, gguf):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(checkpoints[arch])
    lm = LlamaLM(gguf(arch, "f32"), vocab_only=True)
    try:
        for text in [qb.EXTRA_TEXT, "  two leading spaces", "MT-CO1 HLA-DRA\n\nRPL13A 0.5"]:
            assert lm.tokenize(text, at_start=True) == hf(text)["input_ids"], text
    finally:
        lm.close()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("qtype", ["f32", "f16"])
def test_float_logits_match_transformers(arch, qtype, versus_hf):
    report = versus_hf(arch, qtype)
    assert report.max_abs_logit_diff <= 0.02, (
        f"max |Δ logit| {report.max_abs_logit_diff:.4f} at logit scale {report.logit_scale:.1f}"
    )
    assert report.top1_agreement == 1.0
    assert report.label_agreement == 1.0


@pytest.mark.parametrize("arch", ARCHS)
def test_q8_0_agrees_with_transformers(arch, versus_hf):
    report = versus_hf(arch, "q8_0")
    assert report.tokenization_identical
    assert report.top1_agreement >= 0.99, f"top-1 agreement {report.top1_agreement:.2%}"
    assert report.label_agreement == 1.0


def test_q4_k_m_is_usable(versus_hf):
    report = versus_hf("gemma2", "q4_k_m")
    assert report.top1_agreement >= 0.9
