"""Which llama.cpp build the app runs on: version, compute devices, GPU offload (Qt-free).

``backend_info()`` loads llama.cpp's shared libraries in the calling process (no model is
loaded; the CPU variant for this machine is chosen as :mod:`.cpu_variants` says) and asks
ggml's backend registry for its devices. A CPU build lists one CPU device; a CUDA, Metal or
Vulkan build (``LLAMA_CMAKE_ARGS``, see docs/BUILD.md) lists its GPUs as well.
"""

from __future__ import annotations

import ctypes
import dataclasses
import sys
from typing import Any

from .cpu_variants import ensure_loaded, features_label, ggml_library

_DEVICE_TYPES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel", 4: "meta"}


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    """One ggml compute device (``CPU``, ``CUDA0``, ``Vulkan0``, ``MTL0`` ...)."""

    name: str
    description: str
    kind: str  # cpu, gpu, igpu, accel, meta
    backend: str  # the registry that owns it: CPU, CUDA, Metal, Vulkan, BLAS ...
    memory_total: int  # bytes; 0 when the backend does not say
    memory_free: int


@dataclasses.dataclass(frozen=True)
class BackendInfo:
    """What ``c2s version --json`` prints and the app's About box shows."""

    llama_cpp_python: str
    gpu_offload: bool  # llama_supports_gpu_offload(): the build has a GPU backend
    backends: tuple[str, ...]  # registered backends, e.g. ("CPU",) or ("CUDA", "CPU")
    devices: tuple[DeviceInfo, ...]
    system_info: str  # llama_print_system_info(): CPU features and backend flags
    frozen: bool  # running from a packaged bundle
    cpu_variant: str | None = None  # the CPU kernels loaded at run time (haswell, zen4 ...)
    cpu_variant_how: str = "linked"  # checked, remembered, inherited, forced, linked

    @property
    def cpu_features(self) -> str:
        """The instruction sets the CPU kernels use: ``AVX-512 VNNI BF16 AMX``."""
        return features_label(self.system_info)

    @property
    def cpu_label(self) -> str:
        """``CPU · sapphirerapids / AVX-512 VNNI BF16 AMX`` (variant, then its instructions)."""
        parts = [p for p in (self.cpu_variant, self.cpu_features) if p]
        return f"CPU · {' / '.join(parts)}" if parts else "CPU"

    @property
    def accelerator(self) -> str:
        """The backend models run on: the first non-CPU backend with a GPU device, else CPU."""
        for dev in self.devices:
            if dev.kind in ("gpu", "igpu") and dev.backend:
                return dev.backend
        return "CPU"

    def summary(self) -> str:
        """One line: ``CUDA (NVIDIA H200), CPU · zen4 / AVX-512 VNNI BF16 · llama-cpp-python
        0.3.36`` (without a GPU, the CPU part alone)."""
        gpus = [d.description or d.name for d in self.devices if d.kind in ("gpu", "igpu")]
        where = f"{self.accelerator} ({', '.join(gpus)}), " if gpus else ""
        return f"{where}{self.cpu_label} · llama-cpp-python {self.llama_cpp_python}"

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON, with ``accelerator`` and ``summary`` added."""
        d = dataclasses.asdict(self)
        d["accelerator"] = self.accelerator
        d["cpu_features"] = self.cpu_features
        d["cpu_label"] = self.cpu_label
        d["summary"] = self.summary()
        return d


def backend_info() -> BackendInfo:
    """Describe the llama.cpp build in use (loads its libraries; does not load a model)."""
    import llama_cpp

    loaded = ensure_loaded()
    lib = _ggml_library(llama_cpp)
    devices = _devices(lib) if lib is not None else ()
    backends = _backends(lib) if lib is not None else ()
    raw = llama_cpp.llama_print_system_info()
    return BackendInfo(
        llama_cpp_python=str(getattr(llama_cpp, "__version__", "unknown")),
        gpu_offload=bool(llama_cpp.llama_supports_gpu_offload()),
        backends=backends,
        devices=devices,
        system_info=(raw or b"").decode("utf-8", "replace").strip(),
        frozen=bool(getattr(sys, "frozen", False)),
        cpu_variant=loaded.variant,
        cpu_variant_how=loaded.how,
    )


def _ggml_library(llama_cpp: Any) -> Any | None:
    """The ctypes handle of libggml (the backend registry), or None when it cannot be found."""
    try:
        lib = ggml_library()
    except (ImportError, OSError, AttributeError):
        lib = getattr(getattr(llama_cpp, "llama_cpp", None), "_lib", None)
    if lib is None or not hasattr(lib, "ggml_backend_dev_count"):
        return None
    _declare(lib)
    return lib


def _declare(lib: Any) -> None:
    vp, sz, cp = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p
    signatures: dict[str, tuple[list[Any], Any]] = {
        "ggml_backend_dev_count": ([], sz),
        "ggml_backend_dev_get": ([sz], vp),
        "ggml_backend_dev_name": ([vp], cp),
        "ggml_backend_dev_description": ([vp], cp),
        "ggml_backend_dev_type": ([vp], ctypes.c_int),
        "ggml_backend_dev_memory": ([vp, ctypes.POINTER(sz), ctypes.POINTER(sz)], None),
        "ggml_backend_dev_backend_reg": ([vp], vp),
        "ggml_backend_reg_count": ([], sz),
        "ggml_backend_reg_get": ([sz], vp),
        "ggml_backend_reg_name": ([vp], cp),
    }
    for name, (argtypes, restype) in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, restype


def _text(raw: bytes | None) -> str:
    return (raw or b"").decode("utf-8", "replace")


def _devices(lib: Any) -> tuple[DeviceInfo, ...]:
    out = []
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        if not dev:
            continue
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        reg = lib.ggml_backend_dev_backend_reg(dev)
        out.append(
            DeviceInfo(
                name=_text(lib.ggml_backend_dev_name(dev)),
                description=_text(lib.ggml_backend_dev_description(dev)).strip(),
                kind=_DEVICE_TYPES.get(lib.ggml_backend_dev_type(dev), "unknown"),
                backend=_text(lib.ggml_backend_reg_name(reg)) if reg else "",
                memory_total=int(total.value),
                memory_free=int(free.value),
            )
        )
    return tuple(out)


def _backends(lib: Any) -> tuple[str, ...]:
    names = (
        lib.ggml_backend_reg_name(lib.ggml_backend_reg_get(i))
        for i in range(lib.ggml_backend_reg_count())
    )
    return tuple(_text(n) for n in names)
