"""validate_gguf: good files are described; bad ones are refused with the file named."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from c2s_desktop.core.engine.base import ModelFileError
from c2s_desktop.core.models import SUPPORTED_ARCHITECTURES, sha256_file, validate_gguf


@pytest.mark.parametrize(
    ("arch", "qtype", "add_bos", "n_vocab", "file_type"),
    [("gptneox", "f32", False, 1024, "F32"), ("gemma2", "q8_0", True, 640, "Q8_0")],
)
def test_valid_gguf_is_described(
    gguf: Callable[[str, str], Path],
    arch: str,
    qtype: str,
    add_bos: bool,
    n_vocab: int,
    file_type: str,
) -> None:
    path = gguf(arch, qtype)
    info = validate_gguf(path)
    assert (info.architecture, info.add_bos, info.n_vocab, info.file_type) == (
        arch,
        add_bos,
        n_vocab,
        file_type,
    )
    assert info.n_embd == 256 and info.n_ctx_train == 512 and info.size_bytes == path.stat().st_size
    assert info.metadata["c2s.converter"].startswith("c2s-quantize")
    assert all(key.startswith("c2s.") for key in info.metadata)
    assert {"gptneox", "gemma2"} <= set(SUPPORTED_ARCHITECTURES)


def test_sha256_file(gguf: Callable[[str, str], Path]) -> None:
    path = gguf("gptneox", "f32")
    assert sha256_file(path, chunk_size=4096) == hashlib.sha256(path.read_bytes()).hexdigest()


def _refused(path: Path, *words: str) -> ModelFileError:
    with pytest.raises(ModelFileError) as caught:
        validate_gguf(path)
    text = str(caught.value)
    assert str(path) in text and caught.value.hint
    for word in words:
        assert word in text
    return caught.value


def test_refuses_missing_and_non_gguf_files(tmp_path: Path) -> None:
    _refused(tmp_path / "absent.gguf", "not found")
    text = tmp_path / "notes.gguf"
    text.write_text("this is not a model")
    _refused(text, "not a GGUF")


@pytest.mark.parametrize("keep", [100, 0.5, 0.999])
def test_refuses_truncated_file(
    gguf: Callable[[str, str], Path], tmp_path: Path, keep: float
) -> None:
    data = gguf("gptneox", "q8_0").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: int(keep if keep > 1 else len(data) * keep)])
    _refused(cut, "truncated")


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("general.architecture", "unknown", ("architecture 'unknown'", "not supported")),
        ("gptneox.rope.dimension_count", 200, ("rope dimension 200", "head dimension 64")),
        ("gptneox.context_length", 0, ("context_length = 0",)),
        ("gptneox.attention.head_count", 0, ("head_count = 0",)),
        ("gptneox.attention.head_count", 3, ("not divisible by 3 heads",)),
        ("gptneox.block_count", 3, ("3 layers",)),
        ("gptneox.embedding_length", 128, ("token_embd.weight has shape",)),
    ],
)
def test_refuses_impossible_metadata(
    patched: Callable[..., Path], key: str, value: int | str, words: tuple[str, ...]
) -> None:
    _refused(patched(key, value), *words)
