"""HF checkpoint -> float GGUF (F32/F16/BF16), one tensor at a time, without torch.

Tensor infos are declared up front from the safetensors headers; data is then streamed in row
blocks, so peak memory is about one block (or one tensor that needs a whole-tensor fix-up).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, get_tensor_name_map

from .architectures import ArchSpec, HParams, Transform, arch_spec
from .bf16 import f32_to_bf16
from .checkpoint import CONFIG, Checkpoint, Tensor
from .errors import QuantizeError
from .progress import CancelToken, ProgressFn, Stage, check_cancel
from .provenance import Provenance
from .qtypes import QuantType
from .tokenizer import read_vocab

BLOCK_BYTES = 16 << 20  # float32 bytes per row block: bounds peak memory
_ENCODE: dict[GGMLQuantizationType, Callable[[np.ndarray], np.ndarray]] = {
    GGMLQuantizationType.F32: lambda x: x.astype(np.float32, copy=False),
    GGMLQuantizationType.F16: lambda x: x.astype(np.float16),
    GGMLQuantizationType.BF16: f32_to_bf16,
}
_ITEMSIZE = {GGMLQuantizationType.F32: 4, GGMLQuantizationType.F16: 2, GGMLQuantizationType.BF16: 2}


@dataclass(frozen=True)
class PlannedTensor:
    """One output tensor: its GGUF name, source tensor, fix-up and stored type."""

    gguf_name: str
    source: Tensor
    transform: Transform | None
    ggml_type: GGMLQuantizationType

    @property
    def nbytes(self) -> int:
        return math.prod(self.source.shape) * _ITEMSIZE[self.ggml_type]

    def blocks(self, cancel: CancelToken | None) -> Iterator[np.ndarray]:
        """Encoded data in row blocks (one block when a whole-tensor fix-up is needed)."""
        encode = _ENCODE[self.ggml_type]
        if self.transform is not None:
            yield encode(self.transform(self.source.load()))
            return
        for block in self.source.iter_rows(BLOCK_BYTES):
            check_cancel(cancel)
            yield encode(block)


@dataclass
class _Stream:
    """Duck-types the ndarray GGUFWriter.write_tensor_data expects (``nbytes`` + ``tofile``)
    so a tensor is written block by block instead of being materialised whole."""

    tensor: PlannedTensor
    cancel: CancelToken | None

    @property
    def nbytes(self) -> int:
        return self.tensor.nbytes

    def tofile(self, fp: BinaryIO) -> None:
        written = 0
        for block in self.tensor.blocks(self.cancel):
            block.tofile(fp)
            written += block.nbytes
        if written != self.nbytes:
            raise QuantizeError(
                f"tensor {self.tensor.source.name}: wrote {written} bytes, expected {self.nbytes}",
                "the checkpoint's files are inconsistent; download them again",
            )


@dataclass(frozen=True)
class ConversionResult:
    """What :func:`convert_checkpoint` wrote."""

    path: Path
    architecture: str
    quant_type: str
    n_tensors: int
    bytes_written: int
    seconds: float


def plan_tensors(ckpt: Checkpoint, spec: ArchSpec, qtype: QuantType) -> list[PlannedTensor]:
    """Map every checkpoint tensor to its GGUF name, fix-up and type (in file order)."""
    assert qtype.float_type is not None
    hp = HParams(ckpt.config, ckpt.folder / CONFIG)
    names = get_tensor_name_map(spec.arch, int(hp.req("num_hidden_layers")))
    planned = []
    for t in ckpt.tensors:
        if spec.skip.search(t.name):
            continue
        name = names.get_name(t.name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise QuantizeError(
                f"unexpected tensor {t.name} for {spec.hf_name}",
                "the checkpoint does not look like a plain released C2S model",
                ckpt.folder,
            )
        ggml_type = qtype.float_type if len(t.shape) >= 2 else GGMLQuantizationType.F32
        planned.append(PlannedTensor(name, t, spec.transform(t.name, hp), ggml_type))
    missing = set(spec.required) - {p.gguf_name for p in planned}
    if missing:
        raise QuantizeError(
            f"the checkpoint has no {', '.join(sorted(missing))} tensor",
            "its weight files are incomplete (or use tied embeddings llama.cpp does not support)",
            ckpt.folder,
        )
    return planned


def convert_checkpoint(
    ckpt: Checkpoint,
    output: Path,
    qtype: QuantType,
    provenance: Provenance,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> ConversionResult:
    """Write ``ckpt`` as a ``qtype`` (f32/f16/bf16) GGUF at ``output`` (caller makes it atomic)."""
    if qtype.float_type is None:
        raise ValueError(f"{qtype.name} is produced by quantize_gguf, not by the converter")
    start, stage = time.monotonic(), Stage(progress)
    spec = arch_spec(ckpt.architecture, ckpt.folder / CONFIG)
    planned = plan_tensors(ckpt, spec, qtype)
    writer = GGUFWriter(None, spec.gguf_name)
    try:
        _add_metadata(writer, ckpt, spec, planned, qtype, provenance)
        for p in planned:
            # raw_dtype sets the stored type; the numpy dtype only must not be uint8 (byte shape)
            writer.add_tensor_info(
                p.gguf_name, p.source.shape, np.dtype(np.float32), p.nbytes, p.ggml_type
            )
        writer.write_header_to_file(output)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        total, done = sum(p.nbytes for p in planned) or 1, 0
        for p in planned:
            check_cancel(cancel)
            stage(f"converting {p.gguf_name}", done / total)
            writer.write_tensor_data(_Stream(p, cancel))  # type: ignore[arg-type]
            done += p.nbytes
        stage("converted", 1.0)
    finally:
        writer.close()
    seconds = time.monotonic() - start
    return ConversionResult(output, spec.hf_name, qtype.name, len(planned), done, seconds)


def _add_metadata(
    writer: GGUFWriter,
    ckpt: Checkpoint,
    spec: ArchSpec,
    planned: list[PlannedTensor],
    qtype: QuantType,
    provenance: Provenance,
) -> None:
    hp = HParams(ckpt.config, ckpt.folder / CONFIG)
    writer.add_name(provenance.source_repo.split("/")[-1] or ckpt.folder.name)
    if provenance.license:
        writer.add_license(provenance.license)
    spec.write_hparams(writer, hp)
    writer.add_file_type(int(qtype.file_type))
    n_vocab = next(p for p in planned if p.gguf_name == "token_embd.weight").source.shape[0]
    read_vocab(ckpt.folder, spec.tokenizer, n_vocab, spec.add_bos).add_to(writer)
    provenance.add_to(writer)
