"""A peft LoRA adapter folder -> the GGUF LoRA file llama.cpp loads beside its base model.

Tensor names and row fix-ups come from the converter's own tables (``architectures.py``): a
LoRA'd ``<hf module>.weight`` becomes ``<gguf name>.weight.lora_a`` (r, in) and ``.lora_b``
(out, r), both F32, and the base tensor's row transform (GPT-NeoX's QKV regroup) is applied to
``lora_b``'s rows. llama.cpp scales every pair by ``adapter.lora.alpha / r``; where peft's scale
differs (rsLoRA, per-module alpha or rank patterns) the ratio is folded into ``lora_b``.

C2S keys (``c2s.adapter.*``) say which base the adapter belongs to (``base_files``: the same
``"<sha256>  <file>"`` strings the converter writes as ``c2s.source_files``) and what it was
trained for (``label_key``, ``labels``, ``provenance`` as JSON).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFType, GGUFWriter, Keys, get_tensor_name_map

from .architectures import ArchSpec, HParams, Transform, arch_spec
from .checkpoint import CONFIG, architecture_of, open_checkpoint, read_config
from .errors import QuantizeError
from .fileio import atomic_output, read_json
from .progress import Stage
from .provenance import SourceInfo, make_provenance, recorded_source_files
from .safetensors_io import read_header

ADAPTER_PREFIX = "c2s.adapter."
PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
_PEFT_PREFIX = "base_model.model."
_HINT = "save the adapter with peft's save_pretrained (LoRA on linear layers only)"


@dataclass(frozen=True)
class LoraPair:
    """One LoRA'd base tensor: its GGUF name and the (already fixed-up) A and B matrices."""

    gguf_name: str  # the base tensor, e.g. blk.0.attn_qkv.weight
    a: np.ndarray  # (r, in)
    b: np.ndarray  # (out, r)


def base_files(base_dir: Path) -> tuple[str, ...]:
    """``"<sha256>  <file>"`` of the base checkpoint's files, as the converter records them.

    A ``c2s_source.json`` beside the checkpoint (from the HF export) supplies its
    ``source_files`` list instead of hashing.
    """
    base_dir = Path(base_dir)
    recorded = recorded_source_files(base_dir)
    if recorded is not None:
        return recorded
    from .pipeline import hash_checkpoint_files  # the converter's own file list and hashing

    ckpt = open_checkpoint(base_dir)
    hashes = hash_checkpoint_files(ckpt, Stage(None), None)
    info = SourceInfo()
    return make_provenance(info, base_dir, ckpt.architecture, "", hashes).source_files


def read_lora(peft_dir: Path, base_dir: Path) -> tuple[ArchSpec, float, list[LoraPair]]:
    """The base's architecture entry, the alpha to write, and every LoRA pair in GGUF form."""
    peft_dir, base_dir = Path(peft_dir), Path(base_dir)
    config_path = peft_dir / PEFT_CONFIG
    if not config_path.is_file():
        raise QuantizeError(f"no {PEFT_CONFIG} (not a peft adapter folder)", _HINT, peft_dir)
    cfg = read_json(config_path)
    if not isinstance(cfg, dict):
        raise QuantizeError("adapter config is not a JSON object", _HINT, config_path)
    _check_peft_config(cfg, config_path)
    base_config = read_config(base_dir)
    spec = arch_spec(architecture_of(base_config), base_dir / CONFIG)
    hp = HParams(base_config, base_dir / CONFIG)
    names = get_tensor_name_map(spec.arch, int(hp.req("num_hidden_layers")))
    weights = peft_dir / PEFT_WEIGHTS
    if not weights.is_file():
        raise QuantizeError(f"no {PEFT_WEIGHTS} in the adapter folder", _HINT, peft_dir)
    tensors = {t.name: t for t in read_header(weights)}
    alpha = float(cfg.get("lora_alpha") or 8)
    pairs = []
    for key in sorted(tensors):
        if not key.endswith(".lora_A.weight"):
            if not key.endswith(".lora_B.weight"):
                raise QuantizeError(f"unexpected adapter tensor {key}", _HINT, weights)
            continue
        module = key[: -len(".lora_A.weight")]
        b_key = module + ".lora_B.weight"
        if b_key not in tensors:
            raise QuantizeError(f"adapter tensor {b_key} is missing", _HINT, weights)
        hf_name = module.removeprefix(_PEFT_PREFIX) + ".weight"
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight",))
        if gguf_name is None or gguf_name == "token_embd.weight":
            raise QuantizeError(
                f"LoRA on {hf_name} cannot be written for llama.cpp",
                f"train LoRA on the attention and MLP linear layers of {spec.hf_name} only",
                weights,
            )
        a, b = tensors[key].load(), tensors[b_key].load()
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise QuantizeError(f"{module}: lora_A and lora_B ranks differ", _HINT, weights)
        rank = a.shape[0]
        scale = _peft_scale(cfg, module, rank)
        b = b * np.float32(scale / (alpha / rank)) if not math.isclose(scale, alpha / rank) else b
        fix = spec.transform(hf_name, hp)
        if fix is not None:
            b = _rows_only(fix, b.shape[0], gguf_name, weights)(b)
        pairs.append(LoraPair(gguf_name, np.ascontiguousarray(a), np.ascontiguousarray(b)))
    if not pairs:
        raise QuantizeError("the adapter holds no LoRA tensors", _HINT, weights)
    return spec, alpha, pairs


def write_lora_gguf(
    peft_dir: Path, base_dir: Path, out: Path, provenance: Mapping[str, Any]
) -> Path:
    """Write the peft LoRA in ``peft_dir`` (trained on ``base_dir``) as a GGUF adapter at ``out``.

    ``provenance`` is stored as JSON under ``c2s.adapter.provenance``; its ``label_key``
    (or ``label_column``), ``labels`` and ``base_name`` (or ``base``) also get keys of their own.
    The file is written atomically: on error nothing is left at ``out``.
    """
    out = Path(out)
    spec, alpha, pairs = read_lora(peft_dir, base_dir)
    prov = dict(provenance)
    label_key = str(prov.get("label_key") or prov.get("label_column") or "")
    base = prov.get("base")
    base_name = str(prov.get("base_name") or (base if isinstance(base, str) else "") or "")
    base_name = base_name or Path(base_dir).name
    labels = [str(x) for x in prov.get("labels") or ()]
    writer = GGUFWriter(None, spec.gguf_name)
    try:
        writer.add_type(GGUFType.ADAPTER)
        writer.add_name(str(prov.get("name") or out.name.removesuffix(".gguf")))
        writer.add_string(Keys.Adapter.TYPE, "lora")
        writer.add_float32(Keys.Adapter.LORA_ALPHA, alpha)
        writer.add_array(ADAPTER_PREFIX + "base_files", list(base_files(base_dir)))
        writer.add_string(ADAPTER_PREFIX + "base_name", base_name)
        writer.add_string(ADAPTER_PREFIX + "label_key", label_key)
        writer.add_array(ADAPTER_PREFIX + "labels", labels)
        writer.add_string(ADAPTER_PREFIX + "provenance", json.dumps(prov, default=str))
        for p in pairs:
            writer.add_tensor(p.gguf_name + ".lora_a", p.a.astype(np.float32, copy=False))
            writer.add_tensor(p.gguf_name + ".lora_b", p.b.astype(np.float32, copy=False))
        with atomic_output(out) as tmp:
            writer.write_header_to_file(tmp)
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
            writer.close()
    finally:
        writer.close()
    return out


def _check_peft_config(cfg: Mapping[str, Any], path: Path) -> None:
    kind = str(cfg.get("peft_type", "LORA")).upper()
    if kind != "LORA":
        raise QuantizeError(f"a {kind} adapter is not a LoRA", _HINT, path)
    refused = {
        "use_dora": "DoRA adapters",
        "fan_in_fan_out": "fan_in_fan_out weights",
        "modules_to_save": "fully trained extra modules (modules_to_save)",
        "trainable_token_indices": "trainable token embeddings",
    }
    for key, what in refused.items():
        if cfg.get(key):
            raise QuantizeError(f"{what} cannot be written for llama.cpp", _HINT, path)
    if cfg.get("bias", "none") != "none":
        raise QuantizeError("trained biases cannot be written for llama.cpp", _HINT, path)


def _peft_scale(cfg: Mapping[str, Any], module: str, rank: int) -> float:
    """peft's ``lora_alpha / r`` for one module (``/ sqrt(r)`` with rsLoRA; patterns honoured)."""
    alpha = float(cfg.get("lora_alpha") or 8)
    for pattern, value in (cfg.get("alpha_pattern") or {}).items():
        if module == pattern or module.endswith("." + pattern):
            alpha = float(value)
    return alpha / math.sqrt(rank) if cfg.get("use_rslora") else alpha / rank


def _rows_only(fix: Transform, n_rows: int, name: str, path: Path) -> Transform:
    """``fix`` if it only reorders rows (so it applies to lora_b); otherwise a clear error."""
    index = np.arange(n_rows, dtype=np.float32)[:, None]
    moved = fix(index)
    if moved.shape != index.shape or not np.array_equal(np.sort(moved[:, 0]), index[:, 0]):
        raise QuantizeError(f"LoRA on {name} cannot be written for llama.cpp", _HINT, path)
    return fix
