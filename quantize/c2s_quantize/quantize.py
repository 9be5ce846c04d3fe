"""Quantize a float GGUF with llama.cpp's own quantizer (``llama_model_quantize``)."""

from __future__ import annotations

import re
from pathlib import Path

from .progress import CancelToken, ProgressFn, Stage
from .qtypes import QuantType
from .worker import run_worker

_TENSOR_LINE = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]\s+(\S+)")


def quantize_gguf(
    src: Path,
    dst: Path,
    qtype: QuantType,
    *,
    threads: int = 0,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> None:
    """Write ``src`` quantized to ``qtype`` at ``dst``, in a worker process.

    llama.cpp logs one line per tensor (to this process's log and ``on_line``); progress is
    derived from those lines. ``threads=0`` uses all cores. The caller makes ``dst`` atomic.
    """
    stage = Stage(progress)

    def on_line(line: str) -> None:
        if m := _TENSOR_LINE.match(line):
            done, total, name = int(m[1]), int(m[2]), m[3]
            stage(f"quantizing {name} to {qtype.name}", (done - 1) / max(total, 1))

    stage(f"quantizing to {qtype.name}", 0.0)
    run_worker(
        ["quantize", str(src), str(dst), str(int(qtype.file_type)), str(threads)],
        what=f"quantizing to {qtype.name}",
        path=src,
        on_line=on_line,
        cancel=cancel,
    )
    stage(f"quantized to {qtype.name}", 1.0)
