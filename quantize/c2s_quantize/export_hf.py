"""GGUF -> Hugging Face folder: the converter run backwards, so a model that exists only as a
GGUF (the bundled demo model, a file a lab was given) can be fine-tuned with transformers.

The folder holds ``config.json``, ``model.safetensors`` (F32, dequantized), ``tokenizer.json`` +
``tokenizer_config.json`` rebuilt from the GGUF's ``tokenizer.ggml.*`` metadata, and
``c2s_source.json`` (the GGUF's sha256 and its ``c2s.source_files``, so an adapter trained on the
export is matched to the GGUF it came from).

Nothing here has its own name or layout table: HF tensor names come from transformers' own model
for the rebuilt config, mapped forward with the converter's name map and inverted; the
converter's tensor fix-ups are inverted by probing them; the rebuilt config is checked by writing
it back with the converter's hyper-parameter writer and comparing with the GGUF.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter, TokenType, get_tensor_name_map
from gguf.quants import dequantize

from . import __version__
from .architectures import ARCHITECTURES, ArchSpec, HParams, Transform
from .errors import QuantizeError
from .fileio import sha256_file
from .progress import CancelToken, ProgressFn, Stage, check_cancel
from .provenance import PREFIX, SOURCE_JSON
from .tokenizer import TokenizerKind

WEIGHTS = "model.safetensors"
_GPT2_SPLIT = ("gpt-2", "olmo")  # llama.cpp pre-tokenizers with the GPT-2 regex (as HF ByteLevel)
_NEEDS_TORCH = "install torch and transformers (pip install 'c2s-quantize[verify]')"


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_hf` wrote."""

    folder: Path
    architecture: str
    n_tensors: int
    bytes_written: int
    gguf_sha256: str
    seconds: float


def export_hf(
    gguf_path: Path,
    out_dir: Path,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> ExportResult:
    """Write the GGUF ``gguf_path`` as a Hugging Face checkpoint folder ``out_dir`` (atomic:
    built in a hidden sibling folder and renamed; ``out_dir`` must not exist or be empty)."""
    start, stage = time.monotonic(), Stage(progress)
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    if not gguf_path.is_file():
        raise QuantizeError("no such GGUF file", "check the path", gguf_path)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise QuantizeError("already exists", "choose a new output folder", out_dir)
    reader = _read(gguf_path)
    spec = _spec_for(reader, gguf_path)
    config = _config(reader, spec, gguf_path)
    _check_config(config, spec, reader, gguf_path)
    tokenizer_files = _tokenizer_files(reader, spec, gguf_path)
    plan = _plan(reader, spec, config, gguf_path)
    digest = sha256_file(gguf_path, stage.sub(0.0, 0.2), cancel)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.{secrets.token_hex(4)}.c2s-tmp"
    tmp.mkdir()
    try:
        written = _write_safetensors(tmp / WEIGHTS, plan, stage.sub(0.2, 1.0), cancel)
        _write_json(tmp / "config.json", config)
        for name, content in tokenizer_files.items():
            _write_json(tmp / name, content)
        _write_json(tmp / SOURCE_JSON, _source_record(reader, gguf_path, digest))
        check_cancel(cancel)
        if out_dir.is_dir():
            out_dir.rmdir()  # empty (checked above); os.replace cannot replace it on every OS
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    stage("exported", 1.0)
    seconds = time.monotonic() - start
    return ExportResult(out_dir, spec.hf_name, len(plan), written, digest, seconds)


def read_source_record(folder: Path) -> dict[str, Any] | None:
    """The ``c2s_source.json`` of an exported folder, or None when there is none."""
    path = Path(folder) / SOURCE_JSON
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QuantizeError(f"invalid JSON ({exc})", "export the GGUF again", path) from None
    return data if isinstance(data, dict) else None


# --- reading the GGUF ---------------------------------------------------------------------


def _read(path: Path) -> GGUFReader:
    try:
        return GGUFReader(path)
    except (ValueError, OSError, struct.error, IndexError, KeyError) as exc:
        raise QuantizeError(
            f"not a readable GGUF file ({exc})", "download or convert it again", path
        ) from None


def _field(reader: GGUFReader, key: str, default: Any = None) -> Any:
    entry = reader.fields.get(key)
    return default if entry is None else entry.contents()


def _spec_for(reader: GGUFReader, path: Path) -> ArchSpec:
    if _field(reader, "general.type") == "adapter":
        raise QuantizeError(
            "is a LoRA adapter, not a model", "export the base model it was trained for", path
        )
    arch = _field(reader, "general.architecture")
    specs = {s.gguf_name: s for s in ARCHITECTURES.values()}
    if arch not in specs:
        raise QuantizeError(
            f"architecture {arch!r} cannot be exported",
            f"supported: {', '.join(specs)}",
            path,
        )
    spec = specs[arch]
    if spec.tokenizer is not TokenizerKind.BPE:
        raise QuantizeError(
            f"exporting {spec.hf_name} (SentencePiece tokenizer) is not supported yet",
            "fine-tune from the original Hugging Face checkpoint folder instead",
            path,
        )
    return spec


# --- config.json --------------------------------------------------------------------------


def _gptneox_config(kv: Callable[..., Any], n_vocab: int) -> dict[str, Any]:
    hidden, heads = int(kv("embedding_length")), int(kv("attention.head_count"))
    return {
        "architectures": ["GPTNeoXForCausalLM"],
        "model_type": "gpt_neox",
        "vocab_size": n_vocab,
        "hidden_size": hidden,
        "num_hidden_layers": int(kv("block_count")),
        "num_attention_heads": heads,
        "intermediate_size": int(kv("feed_forward_length")),
        "max_position_embeddings": int(kv("context_length")),
        "hidden_act": "gelu",  # llama.cpp's GPT-NeoX graph is GELU; the converter requires it
        "rotary_pct": int(kv("rope.dimension_count")) / (hidden // heads),
        "rotary_emb_base": _f32(kv("rope.freq_base", default=10000.0)),
        "use_parallel_residual": bool(kv("use_parallel_residual", default=True)),
        "layer_norm_eps": _f32(kv("attention.layer_norm_epsilon", default=1e-5)),
        "attention_bias": True,
        "tie_word_embeddings": False,
    }


def _f32(value: Any) -> float:
    """A float32 metadata value as the shortest decimal that rounds to it (1e-05, not 9.99e-06)."""
    return float(str(np.float32(value)))


_CONFIGS: dict[str, Callable[[Callable[..., Any], int], dict[str, Any]]] = {
    "gptneox": _gptneox_config,
}


def _config(reader: GGUFReader, spec: ArchSpec, path: Path) -> dict[str, Any]:
    arch = spec.gguf_name
    if _field(reader, f"{arch}.rope.scaling.type") not in (None, "none"):
        raise QuantizeError("rope scaling cannot be exported yet", "", path)

    def kv(key: str, default: Any = None) -> Any:
        value = _field(reader, f"{arch}.{key}", default)
        if value is None:
            raise QuantizeError(
                f"GGUF metadata has no {arch}.{key}", "convert the checkpoint again", path
            )
        return value

    embd = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if embd is None:
        raise QuantizeError("the GGUF has no token_embd.weight tensor", "", path)
    config = _CONFIGS[arch](kv, int(embd.shape[-1]))
    for kind, key in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("pad", "pad_token_id")):
        token_id = _field(reader, f"tokenizer.ggml.{'padding' if kind == 'pad' else kind}_token_id")
        if token_id is not None:
            config[key] = int(token_id)
    config["dtype"] = "float32"
    return config


def _check_config(config: dict[str, Any], spec: ArchSpec, reader: GGUFReader, path: Path) -> None:
    """Write the rebuilt config back with the converter's writer: it must give the GGUF's KV."""
    writer = GGUFWriter(None, spec.gguf_name)
    spec.write_hparams(writer, HParams(config, path / "config.json"))
    for key, value in writer.kv_data[0].items():
        theirs = _field(reader, key)
        ok = (
            math.isclose(float(theirs), float(value.value), rel_tol=1e-6)
            if value.type in (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64) and theirs is not None
            else theirs == value.value
        )
        if not ok:
            raise QuantizeError(
                f"cannot rebuild the model config: {key} would be {value.value}, the GGUF has "
                f"{theirs}",
                "this GGUF was not made by a converter for the released C2S models",
                path,
            )


# --- tensors ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Planned:
    hf_name: str
    shape: tuple[int, ...]
    load: Callable[[], np.ndarray]


def _hf_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """transformers' own parameter names and shapes for ``config`` (no weights allocated)."""
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM
    except ImportError:
        raise QuantizeError("exporting needs torch and transformers", _NEEDS_TORCH) from None
    cfg = AutoConfig.for_model(**config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _plan(reader: GGUFReader, spec: ArchSpec, config: dict[str, Any], path: Path) -> list[_Planned]:
    hp = HParams(config, path)
    names = get_tensor_name_map(spec.arch, int(config["num_hidden_layers"]))
    tensors = {t.name: t for t in reader.tensors}
    planned, used = [], set()
    for hf_name, shape in _hf_shapes(config).items():
        if spec.skip.search(hf_name):
            continue
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        tensor = tensors.get(gguf_name or "")
        if tensor is None:
            raise QuantizeError(
                f"the GGUF has no tensor for {hf_name} ({gguf_name})",
                "the file is incomplete; convert the checkpoint again",
                path,
            )
        if math.prod(shape) != int(tensor.n_elements):
            raise QuantizeError(
                f"tensor {gguf_name} has {tensor.n_elements} values, {hf_name} needs "
                f"{math.prod(shape)}",
                "the GGUF's metadata and tensors disagree",
                path,
            )
        used.add(gguf_name)
        inverse = _invert(spec.transform(hf_name, hp), shape, gguf_name, path)
        planned.append(_Planned(hf_name, shape, _loader(tensor, shape, inverse)))
    extra = sorted(set(tensors) - used)
    if extra:
        raise QuantizeError(
            f"unexpected tensors {', '.join(extra[:5])}",
            "the GGUF was not made from a plain released C2S model",
            path,
        )
    return planned


def _loader(tensor: Any, shape: tuple[int, ...], inverse: Transform | None) -> Callable[[], Any]:
    def load() -> np.ndarray:
        x = dequantize(np.asarray(tensor.data), tensor.tensor_type)
        x = np.asarray(x, dtype=np.float32).reshape(shape)
        return inverse(x).astype(np.float32, copy=False) if inverse is not None else x

    return load


def _invert(
    transform: Transform | None, shape: tuple[int, ...], name: str, path: Path
) -> Transform | None:
    """Inverse of a converter fix-up that moves values and/or adds a constant
    (``y = x[perm] + c``), found by applying it to zeros and to element indices."""
    if transform is None:
        return None
    size = math.prod(shape)
    offset = np.asarray(transform(np.zeros(shape, np.float64)), np.float64)
    moved = np.asarray(transform(np.arange(size, dtype=np.float64).reshape(shape))) - offset
    perm = moved.reshape(-1).astype(np.int64)
    if offset.shape != shape or not np.array_equal(np.sort(perm), np.arange(size)):
        raise QuantizeError(f"cannot invert the converter's fix-up of {name}", "", path)

    def inverse(y: np.ndarray) -> np.ndarray:
        x = np.empty(size, np.float32)
        x[perm] = (y.astype(np.float64) - offset).reshape(-1)
        return x.reshape(shape)

    return inverse


def _write_safetensors(
    path: Path, plan: list[_Planned], progress: ProgressFn | None, cancel: CancelToken | None
) -> int:
    """F32 safetensors, one tensor in memory at a time."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for p in plan:
        nbytes = 4 * math.prod(p.shape)
        header[p.hf_name] = {
            "dtype": "F32",
            "shape": list(p.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for i, p in enumerate(plan):
            check_cancel(cancel)
            if progress is not None:
                progress(f"exporting {p.hf_name}", i / len(plan))
            p.load().astype("<f4", copy=False).tofile(f)
    return offset


# --- tokenizer ----------------------------------------------------------------------------


def _tokenizer_files(reader: GGUFReader, spec: ArchSpec, path: Path) -> dict[str, Any]:
    """tokenizer.json + tokenizer_config.json of a byte-level BPE vocabulary."""
    if _field(reader, "tokenizer.ggml.model") != TokenizerKind.BPE.value:
        raise QuantizeError("the GGUF's tokenizer is not byte-level BPE", "", path)
    pre = _field(reader, "tokenizer.ggml.pre")
    if pre not in _GPT2_SPLIT:  # llama.cpp would split text otherwise than the rebuilt tokenizer
        raise QuantizeError(
            f"tokenizer pre-processing {pre or 'default'!r} cannot be exported",
            "only the GPT-2 text split of the C2S-Pythia tokenizers is supported",
            path,
        )
    tokens: list[str] = list(_field(reader, "tokenizer.ggml.tokens", []))
    types: list[int] = list(_field(reader, "tokenizer.ggml.token_type", []))
    merges: list[str] = list(_field(reader, "tokenizer.ggml.merges", []))
    if not tokens or len(types) != len(tokens):
        raise QuantizeError("the GGUF has no usable token list", "convert it again", path)
    vocab, added = {}, []
    for token_id, (text, kind) in enumerate(zip(tokens, types, strict=True)):
        if kind == TokenType.UNUSED:
            continue
        if kind in (TokenType.NORMAL, TokenType.CONTROL):
            vocab[text] = token_id
        if kind in (TokenType.CONTROL, TokenType.USER_DEFINED):
            special = kind == TokenType.CONTROL
            added.append(_added_token(token_id, text, special))
    specials = {}
    for kind in ("bos", "eos", "unk", "pad"):
        key = "padding" if kind == "pad" else "unknown" if kind == "unk" else kind
        token_id = _field(reader, f"tokenizer.ggml.{key}_token_id")
        if token_id is not None and 0 <= int(token_id) < len(tokens):
            specials[f"{kind}_token"] = tokens[int(token_id)]
    add_bos = bool(_field(reader, "tokenizer.ggml.add_bos_token", spec.add_bos))
    byte_level = {"add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    post: dict[str, Any] = {"type": "ByteLevel", **byte_level}
    if add_bos and "bos_token" in specials:
        bos = specials["bos_token"]
        post = {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A"}}],
            "pair": [
                {"SpecialToken": {"id": bos, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"Sequence": {"id": "B", "type_id": 0}},
            ],
            "special_tokens": {bos: {"id": bos, "ids": [vocab[bos]], "tokens": [bos]}},
        }
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", **byte_level},
        "post_processor": post,
        "decoder": {"type": "ByteLevel", **byte_level},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [m.split(" ", 1) for m in merges],
        },
    }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": int(_field(reader, f"{spec.gguf_name}.context_length", 2048)),
        "add_bos_token": add_bos,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        **specials,
    }
    return {"tokenizer.json": tokenizer, "tokenizer_config.json": config}


def _added_token(token_id: int, content: str, special: bool) -> dict[str, Any]:
    return {
        "id": token_id,
        "content": content,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": not special,
        "special": special,
    }


# --- provenance ---------------------------------------------------------------------------


def _source_record(reader: GGUFReader, path: Path, digest: str) -> dict[str, Any]:
    provenance: Mapping[str, Any] = {
        key[len(PREFIX) :]: _field(reader, key) for key in reader.fields if key.startswith(PREFIX)
    }
    return {
        "exported_by": f"c2s-quantize {__version__}",
        "gguf": path.name,
        "gguf_sha256": digest,
        "gguf_name": _field(reader, "general.name", ""),
        "source_files": list(provenance.get("source_files") or []),
        "provenance": dict(provenance),
    }


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
