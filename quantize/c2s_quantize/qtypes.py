"""Output types: the GGUF file types ``c2s-quantize --type`` offers, with size estimates."""

from __future__ import annotations

from dataclasses import dataclass

from gguf import GGMLQuantizationType, LlamaFileType

from .errors import QuantizeError


@dataclass(frozen=True)
class QuantType:
    """One ``--type`` choice.

    ``float_type`` is set for types the converter writes directly (f32/f16/bf16); the others are
    produced by llama.cpp's quantizer from a lossless intermediate GGUF.
    ``bits_per_weight`` is an upper estimate for 2-D weights, used for the free-space check
    (K-quant mixes keep some tensors at Q6_K; values calibrated on published Pythia/Gemma GGUFs).
    """

    name: str
    file_type: LlamaFileType
    bits_per_weight: float
    float_type: GGMLQuantizationType | None = None

    @property
    def is_quantized(self) -> bool:
        return self.float_type is None


QUANT_TYPES: dict[str, QuantType] = {
    t.name: t
    for t in (
        QuantType("f32", LlamaFileType.ALL_F32, 32.0, GGMLQuantizationType.F32),
        QuantType("f16", LlamaFileType.MOSTLY_F16, 16.0, GGMLQuantizationType.F16),
        QuantType("bf16", LlamaFileType.MOSTLY_BF16, 16.0, GGMLQuantizationType.BF16),
        QuantType("q8_0", LlamaFileType.MOSTLY_Q8_0, 8.5),
        QuantType("q6_k", LlamaFileType.MOSTLY_Q6_K, 6.6),
        QuantType("q5_k_m", LlamaFileType.MOSTLY_Q5_K_M, 6.3),
        QuantType("q4_k_m", LlamaFileType.MOSTLY_Q4_K_M, 5.7),
        QuantType("q4_0", LlamaFileType.MOSTLY_Q4_0, 5.0),
        QuantType("iq4_nl", LlamaFileType.MOSTLY_IQ4_NL, 5.0),
    )
}

RECOMMENDED_CPU = "q4_0"
"""For scoring on a CPU: llama.cpp repacks Q4_0 (and IQ4_NL) weights at load into an 8x8
interleaved layout with fast matrix kernels on x86 (AVX2/AVX-512) and ARM; Q8_0's and the
K-quants' tensors run the plain path there, so they score more slowly despite more bits."""
RECOMMENDED_GPU = "q8_0"
"""For a GPU: dequantizing is cheap there, so the most accurate type that halves F16's size."""


def recommendation() -> str:
    """One line for ``--help`` and reports: which type to use where, and why."""
    return (
        f"recommended: {RECOMMENDED_CPU} for scoring on a CPU (its weights are repacked for fast "
        f"matrix kernels; iq4_nl likewise), {RECOMMENDED_GPU} for a GPU (most accurate at half "
        "of f16's size)"
    )


_LOSSLESS = {"F32": "f32", "F16": "f16", "BF16": "bf16"}


def quant_type(name: str) -> QuantType:
    """The type called ``name`` (case-insensitive)."""
    try:
        return QUANT_TYPES[name.lower()]
    except KeyError:
        raise QuantizeError(
            f"unknown output type {name!r}", f"choose one of {', '.join(QUANT_TYPES)}"
        ) from None


def lossless_type(source_dtype: str) -> QuantType:
    """The float type that holds a checkpoint's weights unchanged (``F32``/``F16``/``BF16``)."""
    return QUANT_TYPES[_LOSSLESS.get(source_dtype, "f32")]


def estimate_bytes(n_matrix: int, n_vector: int, qtype: QuantType) -> int:
    """Upper estimate of a GGUF's tensor bytes: 2-D weights at ``qtype``, 1-D kept in F32."""
    return int(n_matrix * qtype.bits_per_weight / 8) + 4 * n_vector
