"""bfloat16 <-> float32 in NumPy (NumPy has no bfloat16 dtype; raw values travel as uint16)."""

from __future__ import annotations

import numpy as np


def bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    """Widen raw bfloat16 bits (uint16) to float32; exact."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 bits (uint16), round-to-nearest-even; NaN stays NaN.

    Works in place on one uint32 temporary to keep peak memory near 1.5x the input.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    bits = x.view(np.uint32)
    out = bits >> 16
    out &= 1
    out += 0x7FFF
    out += bits  # wraps only for NaN bit patterns, fixed below
    out >>= 16
    nan = np.isnan(x)
    out[nan] = (bits[nan] >> 16) | 0x40
    return out.astype(np.uint16)
