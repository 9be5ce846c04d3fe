"""Fuzzing GGUF validation: mutated bytes of the demo model (header fields set to absurd
values, flips, truncation, insertions) give a ModelInfo or a ModelFileError, never another
exception or a hang."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given

from c2s_desktop.core.engine.base import ModelInfo
from c2s_desktop.core.models import validate_gguf
from c2s_desktop.core.resources import resource_path

from .common import FUZZ, result_or_c2s_error
from .mutations import apply, ops

MODEL = resource_path("demo", "c2s-demo-pbmc.q8_0.gguf")
WORK = Path(tempfile.mkdtemp(prefix="c2s-fuzz-gguf-"))
atexit.register(shutil.rmtree, WORK, True)


@functools.cache
def model_bytes() -> bytes:
    return MODEL.read_bytes()


@functools.cache
def header() -> tuple[int, tuple[tuple[int, int], ...]]:
    """End of the header (start of tensor data) and the numeric fields in it (offset, width):
    the counts, every key/value's lengths and types, every tensor's dims, type and offset."""
    from gguf import GGUFReader

    reader = GGUFReader(MODEL)
    base = reader.data.ctypes.data
    fields = []
    for field in reader.fields.values():
        for part in field.parts:  # counts, lengths, value types and numeric values
            if part.dtype.itemsize in (4, 8) and part.size == 1:
                fields.append((int(part.ctypes.data - base), part.dtype.itemsize))
    for tensor in reader.tensors:
        for part in tensor.field.parts:
            if part.dtype.itemsize in (4, 8):
                start = int(part.ctypes.data - base)
                fields.extend(
                    (start + k * part.dtype.itemsize, part.dtype.itemsize) for k in range(part.size)
                )
    return int(reader.data_offset), tuple(sorted(set(fields)))


def test_demo_model_is_valid_and_header_is_found():
    info = validate_gguf(MODEL)
    end, fields = header()
    assert isinstance(info, ModelInfo) and 0 < end < len(model_bytes())
    assert len(fields) > 20 and all(0 <= o < end for o, _ in fields)
    assert (8, 8) in fields and (16, 8) in fields  # tensor count, key/value count
    assert int(np.frombuffer(model_bytes()[8:16], np.uint64)[0]) == len(validate_tensors())


def validate_tensors() -> list:
    from gguf import GGUFReader

    return list(GGUFReader(MODEL).tensors)


@FUZZ
@given(mutations=ops(len(model_bytes()), header()[1], focus=header()[0]))
def test_mutated_gguf_gives_info_or_model_file_error(mutations):
    path = WORK / "mutated.gguf"
    path.write_bytes(apply(model_bytes(), mutations, header()[1]))
    outcome = result_or_c2s_error(lambda: validate_gguf(path))
    assert isinstance(outcome, ModelInfo) or str(path) in outcome.one_line()
