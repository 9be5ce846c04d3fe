"""How many CPU threads a model should use: one per physical core (Qt-free)."""

from __future__ import annotations

import os
import sys


def physical_cores() -> int:
    """Physical CPU cores (hyper-threads share one core's arithmetic units); logical as fallback.

    Prompt evaluation is matrix multiplication: a second thread on the same core only competes
    for its vector units, so the engine defaults to this many threads.
    """
    logical = os.cpu_count() or 1
    if not sys.platform.startswith("linux"):
        return logical
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return logical
    cores, phys = set(), "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            phys = value.strip()
        elif key == "core id":
            cores.add((phys, value.strip()))
    return max(1, min(len(cores), logical)) if cores else logical
