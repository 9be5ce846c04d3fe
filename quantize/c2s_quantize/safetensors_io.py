"""Lazy safetensors reading: parse the header, read tensors (or row blocks) on demand.

Only the bytes a caller asks for are read (plain reads, no mmap), so peak memory is one tensor
or one row block, not the file. Handles F32/F16/BF16 (and integer) tensors without torch.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bf16 import bf16_to_f32
from .errors import QuantizeError

_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # raw bits, widened by bf16_to_f32
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_MAX_HEADER = 100 * 1024 * 1024
_REDOWNLOAD = "download the file again (an interrupted download leaves a short or broken file)"


@dataclass(frozen=True)
class SafeTensor:
    """One tensor of a safetensors file: where its bytes are and what they hold."""

    name: str
    path: Path
    dtype: str
    shape: tuple[int, ...]
    offset: int  # absolute byte offset in the file
    nbytes: int

    def load(self) -> np.ndarray:
        """The whole tensor as float32 (integers are converted too)."""
        return self._read_rows(0, self.shape[0] if self.shape else 1).reshape(self.shape)

    def iter_rows(self, max_bytes: int = 64 << 20) -> Iterator[np.ndarray]:
        """Float32 blocks of whole leading-axis rows, each at most ~``max_bytes`` as float32."""
        if len(self.shape) < 2:
            yield self.load()
            return
        row_elems = math.prod(self.shape[1:])
        step = max(1, max_bytes // (4 * row_elems))
        for start in range(0, self.shape[0], step):
            stop = min(start + step, self.shape[0])
            yield self._read_rows(start, stop).reshape((stop - start, *self.shape[1:]))

    def _read_rows(self, start: int, stop: int) -> np.ndarray:
        dt = _DTYPES[self.dtype]
        row_elems = math.prod(self.shape[1:])  # 1 for vectors and scalars
        buf = np.empty((stop - start) * row_elems, dtype=dt)
        with open(self.path, "rb") as f:
            f.seek(self.offset + start * row_elems * dt.itemsize)
            got = f.readinto(memoryview(buf).cast("B"))
        if got != buf.nbytes:
            raise QuantizeError(
                f"file ended while reading tensor {self.name}", _REDOWNLOAD, self.path
            )
        return bf16_to_f32(buf) if self.dtype == "BF16" else buf.astype(np.float32, copy=False)


def read_header(path: Path) -> list[SafeTensor]:
    """Parse and check a safetensors header; raise QuantizeError if it is broken or truncated."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise QuantizeError("not a safetensors file (shorter than 8 bytes)", _REDOWNLOAD, path)
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER or 8 + n > size:
            raise QuantizeError(
                "not a safetensors file, or truncated inside its header", _REDOWNLOAD, path
            )
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QuantizeError(f"corrupt safetensors header ({exc})", _REDOWNLOAD, path) from None
    if not isinstance(header, dict):
        raise QuantizeError("corrupt safetensors header (not a JSON object)", _REDOWNLOAD, path)
    data_start, data_size = 8 + n, size - 8 - n
    return [
        _tensor(path, name, info, data_start, data_size)
        for name, info in header.items()
        if name != "__metadata__"
    ]


def _tensor(path: Path, name: str, info: dict, data_start: int, data_size: int) -> SafeTensor:
    try:
        dtype, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
    except (KeyError, TypeError, ValueError):
        raise QuantizeError(f"corrupt header entry for tensor {name}", _REDOWNLOAD, path) from None
    if dtype not in _DTYPES:
        raise QuantizeError(
            f"tensor {name} has dtype {dtype}, which the converter cannot read",
            f"use a checkpoint stored in one of {', '.join(_DTYPES)}",
            path,
        )
    if end - begin != math.prod(shape) * _DTYPES[dtype].itemsize or begin < 0:
        raise QuantizeError(
            f"header size of tensor {name} does not match its shape", _REDOWNLOAD, path
        )
    if end > data_size:
        raise QuantizeError(
            f"file is truncated: tensor {name} needs {end:,} data bytes, {data_size:,} present",
            _REDOWNLOAD,
            path,
        )
    return SafeTensor(name, path, dtype, shape, data_start + begin, end - begin)
