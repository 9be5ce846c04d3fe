"""Local GGUF model files: validation before loading, and sha256 for provenance.

llama.cpp raises on most malformed files but *aborts the process* on some that load fine and fail
at the first decode (e.g. a rope dimension larger than the head dimension). :func:`validate_gguf`
refuses both kinds up front with a message that names the file and says what to do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .engine.base import ModelFileError, ModelInfo

GGUF_MAGIC = b"GGUF"
C2S_PREFIX = "c2s."


@dataclass(frozen=True)
class ArchTraits:
    """What the app needs to know about a llama.cpp architecture."""

    add_bos: bool  # used when the GGUF has no tokenizer.ggml.add_bos_token key


# Architectures the bundled llama.cpp (llama-cpp-python 0.3.36) runs; C2S models are gptneox
# (Pythia) and gemma2 (C2S-Scale). BOS defaults follow llama.cpp's per-vocabulary defaults.
SUPPORTED_ARCHITECTURES: Mapping[str, ArchTraits] = {
    "gptneox": ArchTraits(add_bos=False),
    "gpt2": ArchTraits(add_bos=False),
    "gemma": ArchTraits(add_bos=True),
    "gemma2": ArchTraits(add_bos=True),
    "gemma3": ArchTraits(add_bos=True),
    "llama": ArchTraits(add_bos=True),
    "mistral3": ArchTraits(add_bos=True),
    "qwen2": ArchTraits(add_bos=False),
    "qwen3": ArchTraits(add_bos=False),
    "phi2": ArchTraits(add_bos=False),
    "phi3": ArchTraits(add_bos=False),
    "stablelm": ArchTraits(add_bos=False),
    "olmo": ArchTraits(add_bos=False),
    "falcon": ArchTraits(add_bos=False),
    "bloom": ArchTraits(add_bos=False),
    "starcoder": ArchTraits(add_bos=False),
}

_HINT_DAMAGED = "download or convert the model again"
_HINT_UNSUPPORTED = "use a C2S model converted with c2s-quantize (GPT-NeoX or Gemma-2)"


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (models are gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def validate_gguf(path: str | Path, *, strict: bool = True) -> ModelInfo:
    """Check that ``path`` is a complete GGUF the bundled llama.cpp can run; describe it.

    Raises :class:`ModelFileError` (naming the file, with a hint) when the file is missing, not
    GGUF, truncated, of an unsupported architecture, or has metadata llama.cpp would abort on.
    ``strict=False`` only reads the description (for tests that feed llama.cpp bad files).
    """
    path = Path(path)
    size = check_gguf_file(path)
    try:
        return _describe(path, size, _read(path), strict)
    except _DAMAGED as exc:  # gguf decodes values lazily: damage can surface at any access
        raise ModelFileError(
            f"the GGUF file is truncated or damaged ({exc.__class__.__name__}: {exc})",
            path=path,
            hint=_HINT_DAMAGED,
        ) from None


_DAMAGED = (ValueError, KeyError, IndexError, OverflowError, UnicodeDecodeError, TypeError)


def _describe(path: Path, size: int, reader: Any, strict: bool) -> ModelInfo:
    meta = _Metadata(reader, path)
    arch = meta.text("general.architecture")
    if strict and arch not in SUPPORTED_ARCHITECTURES:
        raise ModelFileError(
            f"architecture {arch!r} is not supported by the bundled llama.cpp",
            path=path,
            hint=_HINT_UNSUPPORTED,
        )
    n_embd = meta.positive(f"{arch}.embedding_length")
    n_layer = meta.positive(f"{arch}.block_count")
    n_vocab = meta.length("tokenizer.ggml.tokens")
    if strict:
        check_tensor_ranges(reader, path, size)
        _check_attention(meta, arch, n_embd)
        _check_tensors(reader, path, n_embd, n_layer, n_vocab)
    add_bos = meta.get("tokenizer.ggml.add_bos_token")
    traits = SUPPORTED_ARCHITECTURES.get(arch, ArchTraits(add_bos=False))
    file_type = meta.get("general.file_type")
    return ModelInfo(
        path=str(path),
        name=str(meta.get("general.name") or path.stem),
        architecture=arch,
        n_ctx_train=meta.positive(f"{arch}.context_length"),
        n_embd=n_embd,
        n_layer=n_layer,
        n_vocab=n_vocab,
        file_type=_file_type_name(file_type),
        size_bytes=size,
        add_bos=traits.add_bos if add_bos is None else bool(add_bos),
        metadata={
            k: _plain(f.contents()) for k, f in reader.fields.items() if k.startswith(C2S_PREFIX)
        },
    )


def check_gguf_file(path: Path, what: str = "model", hint: str = "") -> int:
    """The size of ``path`` once it is known to be a readable file starting with GGUF's magic;
    ``what`` names it in the messages ("model", "adapter")."""
    if not path.is_file():
        raise ModelFileError(f"{what} file not found", path=path, hint="choose an existing .gguf")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ModelFileError(f"cannot read the {what} ({exc.strerror})", path=path) from None
    if magic != GGUF_MAGIC:
        raise ModelFileError(
            "not a GGUF file (wrong magic bytes)",
            path=path,
            hint=hint or "choose a .gguf model (convert a checkpoint with c2s-quantize)",
        )
    return path.stat().st_size


def _read(path: Path) -> Any:
    from gguf import GGUFReader

    try:
        return GGUFReader(path)
    except _DAMAGED as exc:
        raise ModelFileError(
            f"the GGUF file is truncated or damaged ({exc})", path=path, hint=_HINT_DAMAGED
        ) from None


class _Metadata:
    """Typed access to GGUF key/values with errors naming the file."""

    def __init__(self, reader: Any, path: Path) -> None:
        self.fields, self.path = reader.fields, path

    def get(self, key: str) -> Any:
        field = self.fields.get(key)
        return None if field is None else _plain(field.contents())

    def require(self, key: str) -> Any:
        value = self.get(key)
        if value is None:
            raise ModelFileError(
                f"GGUF metadata has no {key!r}", path=self.path, hint=_HINT_DAMAGED
            )
        return value

    def text(self, key: str) -> str:
        return str(self.require(key))

    def positive(self, key: str) -> int:
        value = self.require(key)
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, int) and v > 0 for v in values):
            raise self.absurd(f"{key} = {value!r} (must be positive)")
        return max(values)

    def length(self, key: str) -> int:
        field = self.fields.get(key)
        if field is None or len(field.data) == 0:
            raise ModelFileError(f"GGUF has no {key!r}", path=self.path, hint=_HINT_DAMAGED)
        return len(field.data)

    def absurd(self, what: str) -> ModelFileError:
        return ModelFileError(
            f"impossible model metadata: {what}; llama.cpp would crash on it",
            path=self.path,
            hint=_HINT_DAMAGED,
        )


def _check_attention(meta: _Metadata, arch: str, n_embd: int) -> None:
    """Head counts and rope dimensions llama.cpp asserts on at the first decode."""
    n_head = meta.positive(f"{arch}.attention.head_count")
    n_head_kv = meta.get(f"{arch}.attention.head_count_kv")
    if n_head_kv is not None:
        n_head_kv = meta.positive(f"{arch}.attention.head_count_kv")
        if n_head % n_head_kv:
            raise meta.absurd(f"{n_head} attention heads not divisible by {n_head_kv} KV heads")
    head_dim = meta.get(f"{arch}.attention.key_length")
    if head_dim is None:
        if n_embd % n_head:
            raise meta.absurd(f"embedding length {n_embd} not divisible by {n_head} heads")
        head_dim = n_embd // n_head
    else:
        head_dim = meta.positive(f"{arch}.attention.key_length")
    n_rot = meta.get(f"{arch}.rope.dimension_count")
    if n_rot is not None and not (isinstance(n_rot, int) and 0 <= n_rot <= head_dim):
        raise meta.absurd(f"rope dimension {n_rot!r} exceeds the head dimension {head_dim}")
    meta.positive(f"{arch}.context_length")


def check_tensor_ranges(
    reader: Any, path: Path, size: int, what: str = "GGUF file", hint: str = _HINT_DAMAGED
) -> None:
    """ModelFileError when a tensor of ``reader`` ends past the ``size`` bytes of the file."""
    for t in reader.tensors:
        if t.data_offset + t.n_bytes > size:
            raise ModelFileError(
                f"the {what} is truncated (tensor {t.name!r} ends past the end of the file)",
                path=path,
                hint=hint,
            )


def _check_tensors(reader: Any, path: Path, n_embd: int, n_layer: int, n_vocab: int) -> None:
    """Cheap consistency checks: the embedding matrix and the layer count."""
    by_name = {t.name: t for t in reader.tensors}
    embd = by_name.get("token_embd.weight")
    if embd is None:
        raise ModelFileError("GGUF has no token_embd.weight tensor", path=path, hint=_HINT_DAMAGED)
    if [int(d) for d in embd.shape[:2]] != [n_embd, n_vocab]:
        raise ModelFileError(
            f"token_embd.weight has shape {[int(d) for d in embd.shape]}, "
            f"expected [{n_embd}, {n_vocab}] from the metadata",
            path=path,
            hint=_HINT_DAMAGED,
        )
    layers = {int(name.split(".")[1]) for name in by_name if name.startswith("blk.")}
    if layers != set(range(n_layer)):
        raise ModelFileError(
            f"metadata says {n_layer} layers but the file has tensors for {len(layers)}",
            path=path,
            hint=_HINT_DAMAGED,
        )


def _file_type_name(value: Any) -> str:
    from gguf import LlamaFileType

    try:
        return LlamaFileType(int(value)).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except (TypeError, ValueError):
        return "unknown"


def _plain(value: Any) -> Any:
    """numpy scalars → Python values (ModelInfo must pickle and print cleanly)."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value.item() if hasattr(value, "item") else value
