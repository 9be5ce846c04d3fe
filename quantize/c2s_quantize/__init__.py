"""c2s-quantize: convert released C2S checkpoints to GGUF, quantize and verify them.

Public API (imported lazily, so ``import c2s_quantize`` stays cheap)::

    quantize_checkpoint(folder, output, "q8_0", verify=True, progress=..., cancel=...)
    verify_gguf(original, gguf)            read_provenance(gguf)
    describe(repo_id) / download(remote)   load_catalog() / find_model(repo_id)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "quantize_checkpoint": "pipeline",
    "QuantizeResult": "pipeline",
    "convert_checkpoint": "convert",
    "quantize_gguf": "quantize",
    "verify_gguf": "verify",
    "VerifyReport": "verify",
    "read_provenance": "provenance",
    "Provenance": "provenance",
    "SourceInfo": "provenance",
    "describe": "hub",
    "download": "hub",
    "load_catalog": "catalog",
    "find_model": "catalog",
    "QUANT_TYPES": "qtypes",
    "QuantizeError": "errors",
    "Cancelled": "errors",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
