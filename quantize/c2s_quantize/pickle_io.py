"""Opt-in reading of pickle (``pytorch_model.bin``) weights through torch (``--allow-pickle``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import QuantizeError

_DTYPE_NAMES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}


@dataclass(frozen=True)
class PickleTensor:
    """A tensor of a torch pickle checkpoint (memory-mapped by torch where possible)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    value: Any  # torch.Tensor

    def load(self) -> np.ndarray:
        return self.value.float().numpy()

    def iter_rows(self, max_bytes: int = 64 << 20) -> Iterator[np.ndarray]:
        yield self.load()


def read_pickle_tensors(files: list[Path]) -> list[PickleTensor]:
    """Open pickle weight files with ``torch.load(weights_only=True, mmap=True)``."""
    try:
        import torch
    except ImportError:
        raise QuantizeError(
            "reading pickle weights needs torch, which is not installed",
            "install torch, or use a .safetensors checkpoint",
            files[0],
        ) from None
    tensors: list[PickleTensor] = []
    for f in files:
        try:
            state = torch.load(f, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # torch raises many types for a bad file
            raise QuantizeError(
                f"cannot read pickle weights ({exc})", "download again", f
            ) from None
        for name, value in state.items():
            dtype = _DTYPE_NAMES.get(str(value.dtype).removeprefix("torch."), "F32")
            nbytes = value.numel() * value.element_size()
            tensors.append(PickleTensor(name, tuple(value.shape), dtype, nbytes, value))
    return tensors
