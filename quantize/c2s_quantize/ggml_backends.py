"""llama.cpp's backend modules for a portable build (``GGML_BACKEND_DL``), loaded before use.

A build with run-time CPU dispatch links no CPU backend: something must load one before a model
can be evaluated. The worker loads the variant its parent chose (``$C2S_CPU_VARIANT_PATH``, set
by C2S Desktop after its check; with C2S Desktop installed, its guarded choice), else the best
one ggml finds for this CPU, and any GPU modules.
A build with the backends linked in needs nothing.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

VARIANT_PATH_ENV = "C2S_CPU_VARIANT_PATH"


def load_backends() -> None:
    """Register llama.cpp's backends once per process (a no-op for a linked build).

    With C2S Desktop installed, its guarded choice (checked once, remembered) is used; a
    best-rated variant can crash on a CPU that advertises instructions it cannot run.
    """
    try:
        from c2s_desktop.core.engine.cpu_variants import ensure_loaded
    except ImportError:  # c2s-quantize on its own: the parent's choice, else ggml's pick
        pass
    else:
        ensure_loaded()
        return
    import llama_cpp  # loads libllama and the libggml it links (libggml.so.0)

    folder = Path(os.environ.get("LLAMA_CPP_LIB_PATH") or Path(llama_cpp.__file__).parent / "lib")
    # Not llama_cpp._ggml's libggml.so: a wheel stores it as a second copy with its own registry.
    linked = folder / "libggml.so.0"
    if linked.is_file():
        lib = ctypes.CDLL(str(linked))
    else:
        from llama_cpp import _ggml

        lib = _ggml.libggml
    lib.ggml_backend_reg_count.argtypes, lib.ggml_backend_reg_count.restype = [], ctypes.c_size_t
    if lib.ggml_backend_reg_count() > 0:
        return
    chosen = os.environ.get(VARIANT_PATH_ENV, "")
    if chosen and Path(chosen).is_file():
        lib.ggml_backend_load.argtypes, lib.ggml_backend_load.restype = (
            [ctypes.c_char_p],
            ctypes.c_void_p,
        )
        for kind in ("cuda", "hip", "vulkan", "metal"):
            gpu = folder / f"libggml-{kind}.so"
            if gpu.is_file():
                lib.ggml_backend_load(os.fsencode(gpu))
        lib.ggml_backend_load(os.fsencode(chosen))
    else:
        lib.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
        lib.ggml_backend_load_all_from_path(os.fsencode(folder))
