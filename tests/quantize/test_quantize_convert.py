"""GGUF contents: hyper-parameters, tensor fix-ups, types, tokenizer keys, provenance."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import quantize_builders as qb
from conftest import THREADS
from gguf import GGMLQuantizationType, GGUFReader
from safetensors.numpy import load_file

from c2s_quantize.architectures import HParams, rotary_fraction
from c2s_quantize.bf16 import bf16_to_f32
from c2s_quantize.pipeline import quantize_checkpoint
from c2s_quantize.provenance import SourceInfo, read_provenance
from c2s_quantize.verify import gguf_type_name

REPO = "vandijklab/C2S-Pythia-410m-cell-type-prediction"


def sharded_weights(folder) -> dict[str, np.ndarray]:
    """All tensors of a (BF16, sharded) checkpoint as float32, read with torch as the oracle."""
    from safetensors.torch import load_file as load_torch

    out = {}
    for shard in folder.glob("*.safetensors"):
        out.update({k: v.float().numpy() for k, v in load_torch(shard).items()})
    return out


def field(reader: GGUFReader, key: str):
    return reader.fields[key].contents()


def tensor(reader: GGUFReader, name: str) -> np.ndarray:
    t = next(t for t in reader.tensors if t.name == name)
    data = np.array(t.data)
    if t.tensor_type == GGMLQuantizationType.BF16:
        data = bf16_to_f32(data.view(np.uint16))
    return data.astype(np.float32).reshape(tuple(reversed(t.shape.tolist())))


@pytest.mark.parametrize(
    "config",
    [
        {"rotary_pct": 0.25},
        {"rope_parameters": {"partial_rotary_factor": 0.25, "rope_theta": 10000.0}},
        {"partial_rotary_factor": 0.25},
    ],
)
def test_rotary_fraction_from_every_spelling(config, tmp_path):
    assert rotary_fraction(HParams(config, tmp_path)) == 0.25


def test_both_rotary_spellings_convert_alike(checkpoints, gguf, tmp_path):
    legacy = qb.copy_checkpoint(checkpoints["gptneox"], tmp_path / "legacy")
    qb.use_legacy_rotary(legacy)
    out = tmp_path / "legacy.gguf"
    quantize_checkpoint(legacy, out, "f16", hash_sources=False, threads=THREADS)
    for path in (out, gguf("gptneox", "f16")):
        reader = GGUFReader(path)
        assert field(reader, "gptneox.rope.dimension_count") == 16  # 0.25 * 256/4
        assert field(reader, "gptneox.rope.freq_base") == 10000.0


def test_gptneox_metadata_and_qkv_regrouping(checkpoints, gguf):
    reader = GGUFReader(gguf("gptneox", "f32"))
    assert field(reader, "general.architecture") == "gptneox"
    assert field(reader, "gptneox.use_parallel_residual") is True
    assert field(reader, "tokenizer.ggml.model") == "gpt2"
    assert field(reader, "tokenizer.ggml.add_bos_token") is False
    assert len(field(reader, "tokenizer.ggml.tokens")) == 1024  # padded to the embedding rows
    hf = load_file(checkpoints["gptneox"] / "model.safetensors")
    qkv = hf["gpt_neox.layers.1.attention.query_key_value.weight"].reshape(4, 3, 64, 256)
    expected = np.concatenate([qkv[:, j].reshape(-1, 256) for j in range(3)])
    np.testing.assert_array_equal(tensor(reader, "blk.1.attn_qkv.weight"), expected)


def test_gemma2_metadata_and_norm_shift(checkpoints, gguf):
    reader = GGUFReader(gguf("gemma2", "f32"))
    assert field(reader, "gemma2.attention.sliding_window") == 16
    assert field(reader, "gemma2.attn_logit_softcapping") == 50.0
    assert field(reader, "gemma2.final_logit_softcapping") == 30.0
    assert field(reader, "gemma2.attention.head_count_kv") == 2
    assert field(reader, "tokenizer.ggml.model") == "llama"
    assert field(reader, "tokenizer.ggml.add_bos_token") is True
    assert field(reader, "tokenizer.ggml.bos_token_id") == 2
    assert not any(t.name == "output.weight" for t in reader.tensors)  # tied to token_embd
    norm = sharded_weights(checkpoints["gemma2"])["model.norm.weight"]
    np.testing.assert_array_equal(tensor(reader, "output_norm.weight"), norm + 1.0)


@pytest.mark.parametrize(
    ("arch", "qtype", "matrix_type"),
    [
        ("gptneox", "f16", GGMLQuantizationType.F16),
        ("gemma2", "bf16", GGMLQuantizationType.BF16),
        ("gptneox", "q8_0", GGMLQuantizationType.Q8_0),
    ],
)
def test_matrices_take_the_type_and_vectors_stay_f32(arch, qtype, matrix_type, gguf):
    reader = GGUFReader(gguf(arch, qtype))
    assert gguf_type_name(gguf(arch, qtype)) == qtype
    for t in reader.tensors:
        expected = matrix_type if len(t.shape) > 1 else GGMLQuantizationType.F32
        assert t.tensor_type == expected, t.name


def test_k_quants_apply_to_256_multiple_rows(gguf):
    types = {t.tensor_type for t in GGUFReader(gguf("gemma2", "q4_k_m")).tensors}
    assert GGMLQuantizationType.Q4_K in types


def test_bf16_source_to_bf16_gguf_is_bit_exact(checkpoints, gguf):
    reader = GGUFReader(gguf("gemma2", "bf16"))
    q = sharded_weights(checkpoints["gemma2"])["model.layers.3.self_attn.q_proj.weight"]
    np.testing.assert_array_equal(tensor(reader, "blk.3.attn_q.weight"), q)


def test_provenance_is_written_and_survives_quantization(checkpoints, tmp_path):
    out = tmp_path / "model.q8_0.gguf"
    quantize_checkpoint(
        checkpoints["gptneox"], out, "q8_0", source=SourceInfo(REPO, "abc123"), threads=THREADS
    )
    prov = read_provenance(out)
    assert prov.source_repo == REPO and prov.source_revision == "abc123"
    assert prov.source_architecture == "GPTNeoXForCausalLM" and prov.source_dtype == "F32"
    assert prov.license == "CC BY-NC-ND 4.0"
    assert "single_cell_cell_type_prediction_prompts.json" in prov.prompt_family
    assert prov.tasks == ("cell type prediction (single cell)",)
    assert prov.converter.startswith("c2s-quantize ")
    weights = checkpoints["gptneox"] / "model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert f"{digest}  model.safetensors" in prov.source_files
    assert {f.split()[1] for f in prov.source_files} >= {"config.json", "tokenizer.json"}
    assert gguf_type_name(out) == "q8_0"


def test_hub_cache_snapshot_path_gives_repo_and_revision(checkpoints, tmp_path):
    rev = "0123456789abcdef0123456789abcdef01234567"
    snap = tmp_path / "models--vandijklab--pythia-160m-c2s" / "snapshots" / rev
    shutil.copytree(checkpoints["gptneox"], snap)
    assert SourceInfo.for_folder(snap) == SourceInfo("vandijklab/pythia-160m-c2s", rev)
