"""Bad inputs give one clear line (file, problem, what to do), exit code 2 and no output."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import quantize_builders as qb
from conftest import THREADS
from gguf import GGUFReader
from safetensors.torch import load_file, save_file

from c2s_quantize import fileio
from c2s_quantize.errors import Cancelled, QuantizeError
from c2s_quantize.pipeline import quantize_checkpoint


def assert_clean_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert " — " in lines[0]  # the hint
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_no_output(directory) -> None:
    assert list(directory.iterdir()) == []


@pytest.fixture
def neox_copy(checkpoints, tmp_path):
    return qb.copy_checkpoint(checkpoints["gptneox"], tmp_path / "ckpt")


@pytest.fixture
def out_dir(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    return out


def test_missing_config(neox_copy, out_dir, cli):
    (neox_copy / "config.json").unlink()
    code, _, err = cli([str(neox_copy), "-o", str(out_dir / "m.gguf")])
    assert_clean_error(code, err, "config.json", "missing")
    assert_no_output(out_dir)


def test_unknown_architecture_lists_supported(neox_copy, out_dir, cli):
    path = neox_copy / "config.json"
    path.write_text(
        json.dumps({**json.loads(path.read_text()), "architectures": ["LlamaForCausalLM"]})
    )
    code, _, err = cli([str(neox_copy), "-o", str(out_dir / "m.gguf")])
    assert_clean_error(
        code, err, "config.json", "LlamaForCausalLM", "GPTNeoXForCausalLM", "Gemma2ForCausalLM"
    )
    assert_no_output(out_dir)


def test_truncated_safetensors(neox_copy, out_dir, cli):
    weights = neox_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    code, _, err = cli([str(neox_copy), "-o", str(out_dir / "m.gguf"), "-t", "f16"])
    assert_clean_error(code, err, "model.safetensors", "truncated", "download")
    assert_no_output(out_dir)


@pytest.fixture
def pickle_only(neox_copy):
    import torch

    weights = neox_copy / "model.safetensors"
    torch.save(load_file(weights), neox_copy / "pytorch_model.bin")
    weights.unlink()
    return neox_copy


def test_pickle_only_is_refused_without_allow_pickle(pickle_only, out_dir, cli):
    code, _, err = cli([str(pickle_only), "-o", str(out_dir / "m.gguf")])
    assert_clean_error(code, err, "pytorch_model.bin", "pickle", "--allow-pickle")
    assert_no_output(out_dir)


def test_allow_pickle_converts_the_same_weights(pickle_only, gguf, out_dir):
    out = out_dir / "m.gguf"
    quantize_checkpoint(
        pickle_only, out, "f32", allow_pickle=True, hash_sources=False, threads=THREADS
    )
    ours = {t.name: np.array(t.data) for t in GGUFReader(out).tensors}
    reference = {t.name: np.array(t.data) for t in GGUFReader(gguf("gptneox", "f32")).tensors}
    assert ours.keys() == reference.keys()
    for name, data in reference.items():
        np.testing.assert_array_equal(ours[name], data)


def test_no_disk_space(neox_copy, out_dir, cli, monkeypatch):
    monkeypatch.setattr(fileio, "free_bytes", lambda directory: 1_000)
    code, _, err = cli([str(neox_copy), "-o", str(out_dir / "m.gguf")])
    assert_clean_error(code, err, str(out_dir), "not enough free disk space")
    assert_no_output(out_dir)


def test_source_that_is_neither_folder_nor_repo_id(out_dir, cli):
    code, _, err = cli(["./no/such/folder", "-o", str(out_dir / "m.gguf")])
    assert_clean_error(code, err, "no such checkpoint folder")


def test_sharded_checkpoint_with_missing_shard(checkpoints, tmp_path, cli):
    gemma = qb.copy_checkpoint(checkpoints["gemma2"], tmp_path / "gemma")
    next(gemma.glob("model-00002-*.safetensors")).unlink()
    code, _, err = cli([str(gemma), "-o", str(tmp_path / "m.gguf")])
    assert_clean_error(code, err, "model-00002", "missing")


def test_corrupt_header(neox_copy, out_dir, cli):
    weights = neox_copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:20] = b"not json at "
    weights.write_bytes(bytes(data))
    code, _, err = cli([str(neox_copy), "-o", str(out_dir / "m.gguf")])
    assert_clean_error(code, err, "model.safetensors", "corrupt")


def test_tensor_of_another_architecture(neox_copy, out_dir):
    weights = neox_copy / "model.safetensors"
    tensors = load_file(weights)
    tensors["vision_tower.patch_embed.weight"] = tensors["embed_out.weight"][:2].clone()
    save_file(tensors, weights)
    with pytest.raises(QuantizeError, match="unexpected tensor vision_tower"):
        quantize_checkpoint(
            neox_copy, out_dir / "m.gguf", "f16", hash_sources=False, threads=THREADS
        )
    assert_no_output(out_dir)


@pytest.mark.parametrize("qtype", ["f16", "q8_0"])
def test_cancel_leaves_nothing_behind(checkpoints, out_dir, qtype):
    cancel = threading.Event()

    def progress(message: str, fraction: float) -> None:
        # cancel once conversion (f16) or llama.cpp's quantizer (q8_0) is under way
        if message.startswith("quantizing" if qtype == "q8_0" else "converting"):
            cancel.set()

    with pytest.raises(Cancelled):
        quantize_checkpoint(
            checkpoints["gptneox"],
            out_dir / "m.gguf",
            qtype,
            progress=progress,
            cancel=cancel,
            threads=THREADS,
        )
    assert_no_output(out_dir)


def test_existing_output_is_untouched_on_failure(neox_copy, out_dir, cli):
    out = out_dir / "m.gguf"
    out.write_bytes(b"previous")
    (neox_copy / "tokenizer.json").write_text("{")
    code, _, err = cli([str(neox_copy), "-o", str(out)])
    assert_clean_error(code, err, "tokenizer.json", "invalid JSON")
    assert out.read_bytes() == b"previous"
    assert [p.name for p in out_dir.iterdir()] == ["m.gguf"]


def test_output_folder_given_as_file(neox_copy, out_dir, cli):
    code, _, err = cli([str(neox_copy), "-o", str(out_dir)])
    assert_clean_error(code, err, "output is a folder")


@pytest.mark.parametrize(
    ("arch", "change", "fragment"),
    [
        ("gptneox", {"hidden_act": "relu"}, "activation 'relu'"),
        ("gemma2", {"query_pre_attn_scalar": 256}, "query_pre_attn_scalar is 256"),
        ("gemma2", {"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}, "'yarn'"),
    ],
)
def test_configs_llama_cpp_would_get_wrong_are_refused(
    checkpoints, tmp_path, cli, arch, change, fragment
):
    folder = qb.copy_checkpoint(checkpoints[arch], tmp_path / "ckpt")
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    code, _, err = cli([str(folder), "-o", str(tmp_path / "m.gguf")])
    assert_clean_error(code, err, "config.json", fragment, "llama.cpp cannot represent")
    assert not (tmp_path / "m.gguf").exists()


def test_missing_output_tensor_is_named(neox_copy, out_dir):
    weights = neox_copy / "model.safetensors"
    tensors = load_file(weights)
    del tensors["embed_out.weight"]
    save_file(tensors, weights)
    with pytest.raises(QuantizeError, match=r"no output\.weight tensor"):
        quantize_checkpoint(neox_copy, out_dir / "m.gguf", "f16", threads=THREADS)
    assert_no_output(out_dir)
