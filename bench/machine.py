"""What every benchmark prints about the machine: the CPU (model name and the vector extensions
that matter for llama.cpp and torch's kernels) and the load average."""

from __future__ import annotations

import os
import platform
from pathlib import Path

FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)


def cpu_line() -> str:
    """E.g. ``Intel(R) Xeon(R) Processor, 2 logical CPUs (avx2, avx512f, ...)``."""
    model, flags = platform.processor() or platform.machine() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    shown = ", ".join(f for f in FLAGS if f in flags) or "no AVX2"
    return f"{model}, {os.cpu_count()} logical CPUs ({shown})"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
