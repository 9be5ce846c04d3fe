"""Per-architecture tables: hyper-parameters, tensor fix-ups and tokenizer kind for GGUF.

Facts behind each entry are in the project's TOOLCHAIN notes (measured against transformers).
Adding an architecture means adding one :class:`ArchSpec` to ``ARCHITECTURES``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import MODEL_ARCH, MODEL_ARCH_NAMES, GGUFWriter, RopeScalingType

from .errors import QuantizeError
from .tokenizer import TokenizerKind

Transform = Callable[[np.ndarray], np.ndarray]
_MISSING = object()


class HParams:
    """``config.json`` values, raising a clear error when a required one is missing."""

    def __init__(self, config: Mapping[str, Any], path: Path) -> None:
        self.config = config
        self.path = path

    def req(self, key: str) -> Any:
        value = self.config.get(key)
        if value is None:
            raise QuantizeError(
                f"config.json has no {key!r}",
                "the checkpoint's config.json is incomplete",
                self.path,
            )
        return value

    def opt(self, *keys: str, default: Any = None) -> Any:
        """First present, non-null value among ``keys``; ``a.b`` reads a nested object."""
        for key in keys:
            value: Any = self.config
            for part in key.split("."):
                value = value.get(part) if isinstance(value, Mapping) else None
            if value is not None:
                return value
        return default

    def require_gelu(self, *keys: str) -> None:
        """llama.cpp's GPT-NeoX and Gemma-2 graphs hard-code a GELU feed-forward."""
        act = str(self.opt(*keys, default="gelu"))
        if not act.startswith("gelu"):
            raise self.unsupported(f"activation {act!r}")

    def unsupported(self, what: str) -> QuantizeError:
        return QuantizeError(
            f"{what}, which llama.cpp cannot represent",
            "only configurations of the released C2S models are supported",
            self.path,
        )


@dataclass(frozen=True)
class ArchSpec:
    """How one Hugging Face architecture maps onto a llama.cpp architecture."""

    hf_name: str
    arch: MODEL_ARCH
    tokenizer: TokenizerKind
    add_bos: bool  # default when the tokenizer files do not say
    skip: re.Pattern[str]  # HF buffers that are not weights (or are tied copies)
    write_hparams: Callable[[GGUFWriter, HParams], None]
    transform: Callable[[str, HParams], Transform | None]
    required: tuple[str, ...]  # GGUF tensors llama.cpp cannot do without

    @property
    def gguf_name(self) -> str:
        return MODEL_ARCH_NAMES[self.arch]


def rotary_fraction(hp: HParams) -> float:
    """Fraction of head dims that get rotary embeddings (transformers 4 and 5 spellings)."""
    return float(
        hp.opt(
            "rotary_pct",
            "rope_parameters.partial_rotary_factor",
            "partial_rotary_factor",
            default=0.25,
        )
    )


def rope_theta(hp: HParams) -> float:
    return float(
        hp.opt("rope_parameters.rope_theta", "rope_theta", "rotary_emb_base", default=10000.0)
    )


def _add_rope_scaling(w: GGUFWriter, hp: HParams) -> None:
    kind = hp.opt("rope_parameters.rope_type", "rope_scaling.rope_type", "rope_scaling.type")
    if kind in (None, "default"):
        return
    if kind != "linear":
        raise hp.unsupported(f"rope scaling type {kind!r}")
    w.add_rope_scaling_type(RopeScalingType.LINEAR)
    w.add_rope_scaling_factor(float(hp.opt("rope_parameters.factor", "rope_scaling.factor")))


def _gptneox_hparams(w: GGUFWriter, hp: HParams) -> None:
    hidden, heads = int(hp.req("hidden_size")), int(hp.req("num_attention_heads"))
    if not hp.opt("attention_bias", default=True):
        raise hp.unsupported("attention_bias is false")
    hp.require_gelu("hidden_act")
    w.add_context_length(int(hp.req("max_position_embeddings")))
    w.add_embedding_length(hidden)
    w.add_block_count(int(hp.req("num_hidden_layers")))
    w.add_feed_forward_length(int(hp.req("intermediate_size")))
    w.add_head_count(heads)
    w.add_rope_dimension_count(int(rotary_fraction(hp) * (hidden // heads)))
    w.add_rope_freq_base(rope_theta(hp))
    _add_rope_scaling(w, hp)
    w.add_parallel_residual(bool(hp.opt("use_parallel_residual", default=True)))
    w.add_layer_norm_eps(float(hp.opt("layer_norm_eps", default=1e-5)))


def _gptneox_transform(name: str, hp: HParams) -> Transform | None:
    # HF fuses QKV per head ([heads, 3, head_dim, ...]); llama.cpp wants all Q, then K, then V.
    if not name.endswith(("attention.query_key_value.weight", "attention.query_key_value.bias")):
        return None
    heads = int(hp.req("num_attention_heads"))

    def regroup(x: np.ndarray) -> np.ndarray:
        per_head = x.reshape((heads, 3, -1, *x.shape[1:]))
        return np.concatenate([per_head[:, j].reshape((-1, *x.shape[1:])) for j in range(3)])

    return regroup


def _gemma2_hparams(w: GGUFWriter, hp: HParams) -> None:
    hidden, heads = int(hp.req("hidden_size")), int(hp.req("num_attention_heads"))
    layers, head_dim = int(hp.req("num_hidden_layers")), int(hp.req("head_dim"))
    _check_gemma2_llama_cpp_fixed_choices(hp, hidden, heads, layers, head_dim)
    hp.require_gelu("hidden_activation", "hidden_act")
    w.add_context_length(int(hp.req("max_position_embeddings")))
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(int(hp.req("intermediate_size")))
    w.add_head_count(heads)
    w.add_head_count_kv(int(hp.opt("num_key_value_heads", default=heads)))
    w.add_layer_norm_rms_eps(float(hp.opt("rms_norm_eps", default=1e-6)))
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_freq_base(rope_theta(hp))
    _add_rope_scaling(w, hp)
    w.add_attn_logit_softcapping(float(hp.req("attn_logit_softcapping")))
    w.add_final_logit_softcapping(float(hp.req("final_logit_softcapping")))
    w.add_sliding_window(int(hp.req("sliding_window")))


def _check_gemma2_llama_cpp_fixed_choices(
    hp: HParams, hidden: int, heads: int, layers: int, head_dim: int
) -> None:
    """llama.cpp hard-codes what HF reads from config; refuse configs it would get wrong."""
    # Attention scale: 1/sqrt(head_dim), except 46 layers (27B) use 1/sqrt(hidden/heads).
    expected = hidden // heads if layers == 46 else head_dim
    scalar = hp.opt("query_pre_attn_scalar", default=256)
    if int(scalar) != expected:
        raise hp.unsupported(f"query_pre_attn_scalar is {scalar} (llama.cpp uses {expected})")
    # Sliding-window layers alternate, starting with layer 0.
    layer_types = hp.opt("layer_types")
    if layer_types is not None:
        pattern = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)]
        if list(layer_types) != pattern:
            raise hp.unsupported("layer_types do not alternate sliding/full from layer 0")


def _gemma2_transform(name: str, hp: HParams) -> Transform | None:
    # Gemma's RMSNorm multiplies by (1 + w); llama.cpp multiplies by w.
    return (lambda x: x + np.float32(1.0)) if name.endswith("norm.weight") else None


ARCHITECTURES: dict[str, ArchSpec] = {
    s.hf_name: s
    for s in (
        ArchSpec(
            "GPTNeoXForCausalLM",
            MODEL_ARCH.GPTNEOX,
            TokenizerKind.BPE,
            add_bos=False,
            skip=re.compile(r"\.attention\.(bias|masked_bias)$|rotary_emb\.inv_freq$"),
            write_hparams=_gptneox_hparams,
            transform=_gptneox_transform,
            required=("token_embd.weight", "output.weight"),
        ),
        ArchSpec(
            "Gemma2ForCausalLM",
            MODEL_ARCH.GEMMA2,
            TokenizerKind.SPM,
            add_bos=True,
            skip=re.compile(r"^lm_head\.weight$|rotary_emb\.inv_freq$"),
            write_hparams=_gemma2_hparams,
            transform=_gemma2_transform,
            required=("token_embd.weight",),  # output is tied to the embedding
        ),
    )
}


def arch_spec(architecture: str, config_path: Path) -> ArchSpec:
    """The table entry for an HF architecture name, or a clear error listing what is supported."""
    try:
        return ARCHITECTURES[architecture]
    except KeyError:
        raise QuantizeError(
            f"architecture {architecture} is not supported",
            f"supported: {', '.join(ARCHITECTURES)}",
            config_path,
        ) from None
