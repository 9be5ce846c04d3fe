"""GGUF -> Hugging Face folder (c2s-quantize export-hf): the export loads in transformers,
tokenizes like the original tokenizer and computes the same logits as llama.cpp on the GGUF."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import quantize_builders as qb
import torch
from conftest import THREADS, main
from gguf import GGUFReader

from c2s_quantize.evaluate import Tokenized
from c2s_quantize.export_hf import SOURCE_JSON, export_hf, read_source_record
from c2s_quantize.fileio import sha256_file
from c2s_quantize.llama_lm import LlamaLM
from c2s_quantize.probes import load_probes
from c2s_quantize.verify import evaluate_gguf

DEMO = Path(__file__).resolve().parents[2] / "resources" / "demo" / "c2s-demo-pbmc.q8_0.gguf"
AWKWARD = [qb.EXTRA_TEXT, "  two leading spaces", "MT-CO1 HLA-DRA\n\nRPL13A 0.5", "<|endoftext|>x"]


@pytest.fixture(scope="module")
def exported(gguf, tmp_path_factory):
    """``exported(qtype)``: the tiny GPT-NeoX GGUF of that type exported (once per type)."""
    root, cache = tmp_path_factory.mktemp("export_hf"), {}

    def get(qtype: str) -> Path:
        if qtype not in cache:
            cache[qtype] = export_hf(gguf("gptneox", qtype), root / qtype).folder
        return cache[qtype]

    return get


def _load(folder: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return AutoTokenizer.from_pretrained(folder), model.eval()


def _hf_logits(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def _llama_logits(path: Path, prompts: list[list[int]], out: Path) -> list[np.ndarray]:
    """llama.cpp's logits for each prompt (in its worker process, as verification runs it)."""
    probes = load_probes()[: len(prompts)]
    forced = [Tokenized(tuple(ids), ()) for ids in prompts]
    runs = evaluate_gguf(path, probes, forced, out, threads=THREADS)
    return [np.load(r.logits_file) for r in runs]


def _prompts(tokenizer, n: int = 3) -> list[list[int]]:
    return [tokenizer(p.text)["input_ids"] for p in load_probes()[:n]]


def test_f32_export_matches_llama_cpp_and_the_original(exported, gguf, hf, tmp_path):
    _, model = _load(exported("f32"))
    original_tok, original = hf("gptneox")
    prompts = _prompts(original_tok)
    llama = _llama_logits(gguf("gptneox", "f32"), prompts, tmp_path)
    for ids, ref in zip(prompts, llama, strict=True):
        ours, exact = _hf_logits(model, ids), _hf_logits(original, ids)
        # Lossless round trip: the very weights the checkpoint had.
        assert np.abs(ours - exact).max() < 1e-5
        # llama.cpp's F32 graph differs from transformers by its own arithmetic (tanh GELU,
        # summation order: ~4e-3 here, the converter's tolerance is 0.02); the export adds none.
        assert np.abs(ours - ref).max() < 0.02
        assert abs(np.abs(ours - ref).max() - np.abs(exact - ref).max()) < 1e-4
        assert (ours.argmax(-1) == ref.argmax(-1)).all()


def test_f32_export_tokenizes_like_the_original_tokenizer(exported, hf):
    tok, _ = _load(exported("f32"))
    original_tok, _ = hf("gptneox")
    for text in [p.text for p in load_probes()] + AWKWARD:
        assert tok(text)["input_ids"] == original_tok(text)["input_ids"], text
        ids = original_tok(text)["input_ids"]
        assert tok.decode(ids) == original_tok.decode(ids)
    for key in ("bos_token", "eos_token", "pad_token"):
        assert getattr(tok, key) == getattr(original_tok, key)


def test_q8_0_export_is_within_q8_noise(exported, gguf, hf, tmp_path):
    _, model = _load(exported("q8_0"))
    original_tok, original = hf("gptneox")
    prompts = _prompts(original_tok)
    for ids, ref in zip(
        prompts, _llama_logits(gguf("gptneox", "q8_0"), prompts, tmp_path), strict=True
    ):
        ours, exact = _hf_logits(model, ids), _hf_logits(original, ids)
        scale = np.abs(exact).max()
        # Dequantized Q8_0 weights: off the original by rounding noise, not by a layout error
        # (a wrong QKV order or name gives errors of the order of the logits themselves).
        assert 0 < np.abs(ours - exact).max() < 0.02 * scale
        # llama.cpp on the same Q8_0 weights also rounds its activations to 8 bits.
        assert np.abs(ours - ref).max() < 0.02 * scale
        assert (ours.argmax(-1) == exact.argmax(-1)).mean() > 0.95


def test_source_record_carries_the_gguf_provenance(tmp_path):
    folder = export_hf(DEMO, tmp_path / "demo").folder
    record = read_source_record(folder)
    reader = GGUFReader(DEMO)
    assert record["gguf_sha256"] == sha256_file(DEMO)
    assert record["source_files"] == reader.fields["c2s.source_files"].contents()
    assert record["gguf_name"] == "demo-pbmc-tiny"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [SOURCE_JSON, "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    )
    assert list(tmp_path.iterdir()) == [folder]  # no temporary folder left behind
    tok, model = _load(folder)
    prompt = load_probes()[0].text
    ids = tok(prompt)["input_ids"]
    lm = LlamaLM(DEMO, vocab_only=True)
    try:
        assert lm.tokenize(prompt, at_start=True) == ids
    finally:
        lm.close()
    (ref,) = _llama_logits(DEMO, [ids], tmp_path / "runs")
    ours = _hf_logits(model, ids)
    assert np.abs(ours - ref).max() < 0.02 * np.abs(ref).max()
    assert (ours.argmax(-1) == ref.argmax(-1)).mean() > 0.95


def test_reconverted_export_keeps_the_source_identity(tmp_path):
    """A GGUF converted from an exported folder records the original checkpoint's files, so an
    adapter trained on the export matches it too."""
    from c2s_quantize.lora import base_files
    from c2s_quantize.pipeline import quantize_checkpoint

    folder = export_hf(DEMO, tmp_path / "demo").folder
    original = tuple(GGUFReader(DEMO).fields["c2s.source_files"].contents())
    assert original and base_files(folder) == original
    out = quantize_checkpoint(folder, tmp_path / "again.f16.gguf", "f16", threads=1).output
    assert tuple(GGUFReader(out).fields["c2s.source_files"].contents()) == original


def test_cli_export_hf(gguf, tmp_path, capsys):
    out = tmp_path / "hf"
    with pytest.raises(SystemExit) as done:
        main(["export-hf", str(gguf("gptneox", "f32")), str(out)])
    assert done.value.code in (0, None)
    assert "wrote" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["model_type"] == "gpt_neox"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "no such GGUF file"),
        ("not_gguf", "not a readable GGUF file"),
        ("gemma2", "not supported yet"),
        ("text_split", "tokenizer pre-processing 'gpt-x' cannot be exported"),
        ("exists", "already exists"),
    ],
)
def test_cli_export_hf_bad_input(case, message, gguf, tmp_path, capsys):
    source, out = tmp_path / "model.gguf", tmp_path / "out"
    if case == "not_gguf":
        source.write_bytes(b"GGUF but not really")
    elif case == "gemma2":
        source = gguf("gemma2", "f32")
    elif case == "text_split":  # the same model with a text split llama.cpp applies otherwise
        data = bytearray(gguf("gptneox", "f32").read_bytes())
        at = data.index(b"gpt-2", data.index(b"tokenizer.ggml.pre"))
        data[at : at + 5] = b"gpt-x"
        source.write_bytes(bytes(data))
    elif case == "exists":
        source = gguf("gptneox", "f32")
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as done:
        main(["export-hf", str(source), str(out)])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written
