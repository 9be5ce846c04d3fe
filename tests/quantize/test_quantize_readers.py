"""Torch-free readers: safetensors (incl. BF16 and row blocks), SentencePiece pieces, bf16."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from c2s_quantize.bf16 import bf16_to_f32, f32_to_bf16
from c2s_quantize.errors import QuantizeError
from c2s_quantize.safetensors_io import read_header
from c2s_quantize.spm_model import read_pieces


@pytest.fixture
def mixed_file(tmp_path):
    torch.manual_seed(0)
    tensors = {
        "f32": torch.randn(7, 5),
        "f16": torch.randn(3, 4).half(),
        "bf16": torch.randn(300, 9).bfloat16(),
        "vec": torch.randn(11),
    }
    path = tmp_path / "mixed.safetensors"
    save_file(tensors, path)
    return path, tensors


def test_reads_f32_f16_bf16_exactly_as_float32(mixed_file):
    path, tensors = mixed_file
    found = {t.name: t for t in read_header(path)}
    assert {n: found[n].dtype for n in tensors} == {
        "f32": "F32",
        "f16": "F16",
        "bf16": "BF16",
        "vec": "F32",
    }
    for name, value in tensors.items():
        np.testing.assert_array_equal(found[name].load(), value.float().numpy())


def test_row_blocks_reassemble_the_tensor(mixed_file):
    path, tensors = mixed_file
    bf = next(t for t in read_header(path) if t.name == "bf16")
    blocks = list(bf.iter_rows(max_bytes=9 * 4 * 64))  # 64 rows per block
    assert [len(b) for b in blocks] == [64] * 4 + [44]
    np.testing.assert_array_equal(np.concatenate(blocks), tensors["bf16"].float().numpy())


def test_truncated_file_is_reported_with_its_name(mixed_file, tmp_path):
    path, _ = mixed_file
    short = tmp_path / "short.safetensors"
    short.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(QuantizeError, match="truncated") as info:
        read_header(short)
    assert info.value.path == short
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(b"\x10\x00")
    with pytest.raises(QuantizeError, match="not a safetensors file"):
        read_header(tiny)


def test_bf16_conversion_matches_torch():
    x = np.concatenate(
        [np.random.default_rng(0).standard_normal(10_000) * 100, [0.0, -0.0, np.inf, -np.inf]]
    ).astype(np.float32)
    ours = f32_to_bf16(x)
    theirs = torch.from_numpy(x).bfloat16().view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(bf16_to_f32(ours), torch.from_numpy(x).bfloat16().float())
    assert np.isnan(bf16_to_f32(f32_to_bf16(np.array([np.nan], np.float32))))[0]


def test_sentencepiece_pieces_match_sentencepiece(checkpoints):
    import sentencepiece as spm

    path = checkpoints["gemma2"] / "tokenizer.model"
    sp = spm.SentencePieceProcessor(model_file=str(path))
    pieces = read_pieces(path)
    assert len(pieces) == sp.get_piece_size()
    for i, p in enumerate(pieces):
        assert (p.text, p.score) == (sp.id_to_piece(i), sp.get_score(i))
    assert pieces[2].type == 3 and pieces[3].type == 2  # <bos> CONTROL, <unk> UNKNOWN
    assert any(p.type == 6 for p in pieces)  # byte-fallback pieces
