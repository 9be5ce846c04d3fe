"""The llama.cpp build the app runs on, as backend_info() and `c2s version --json` report it."""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path

import llama_cpp
import psutil
import pytest

from c2s_desktop.cli import main
from c2s_desktop.core.engine.backend import BackendInfo, DeviceInfo, backend_info


def run(capsys, *args: str) -> tuple[int, str]:
    """Run ``c2s ARGS`` in-process; returns (exit code, stdout)."""
    with pytest.raises(SystemExit) as info:
        main(list(args))
        raise SystemExit(0)
    return int(info.value.code or 0), capsys.readouterr().out


APP_VERSION = importlib.metadata.version("c2s-desktop")  # the installed distribution's
GPU_MODULES = ("cuda", "vulkan", "metal", "hip", "sycl", "opencl")
# The instructions the CPU part may name, and the /proc/cpuinfo flag each needs.
CPU_FLAGS = {"AVX-512": "avx512f", "VNNI": "avx512_vnni", "BF16": "avx512_bf16", "AMX": "amx_tile"}


def test_backend_info_lists_the_cpu_device_of_this_build():
    info = backend_info()
    # The installed distribution, and the build's own backend modules beside libllama.
    assert info.llama_cpp_python == importlib.metadata.version("llama_cpp_python")
    modules = [p.name for p in (Path(llama_cpp.__file__).parent / "lib").glob("libggml-*")]
    has_gpu_module = any(f"libggml-{kind}" in name for name in modules for kind in GPU_MODULES)
    assert info.gpu_offload == has_gpu_module
    assert info.gpu_offload == any(d.kind in ("gpu", "igpu") for d in info.devices)
    assert "CPU" in info.backends
    cpus = [d for d in info.devices if d.kind == "cpu"]
    assert len(cpus) == 1 and cpus[0].backend == "CPU"
    assert cpus[0].memory_total == psutil.virtual_memory().total  # the machine's memory
    assert "CPU" in info.system_info  # llama_print_system_info: "CPU : SSE3 = 1 | ..."
    assert info.frozen is False
    if not info.gpu_offload:  # the default (CPU) build: models run on the CPU
        assert info.accelerator == "CPU"
        assert info.summary() == f"{info.cpu_label} · llama-cpp-python {info.llama_cpp_python}"
    # The CPU part names the run-time variant (one of the build's modules) and the instructions
    # its kernels use, each of which this CPU has.
    assert info.cpu_label.startswith("CPU · ") and info.cpu_features
    if info.cpu_variant is not None:
        assert f"libggml-cpu-{info.cpu_variant}.so" in modules
    assert info.cpu_features.split()[0] in ("AVX-512", "AVX2", "AVX", "SSE")
    flags = set(Path("/proc/cpuinfo").read_text().split()) if sys.platform == "linux" else None
    for word in info.cpu_features.split():
        if flags is not None and word in CPU_FLAGS:
            assert CPU_FLAGS[word] in flags, f"{word} named but the CPU lacks {CPU_FLAGS[word]}"


def test_a_gpu_device_names_the_accelerator():
    cpu = DeviceInfo("CPU", "AMD EPYC", "cpu", "CPU", 1 << 34, 1 << 33)
    gpu = DeviceInfo("CUDA0", "NVIDIA H200", "gpu", "CUDA", 1 << 37, 1 << 36)
    info = BackendInfo("0.3.36", True, ("CUDA", "CPU"), (gpu, cpu), "CUDA : ARCHS = 900", False)
    assert info.accelerator == "CUDA"
    assert info.summary() == "CUDA (NVIDIA H200), CPU · llama-cpp-python 0.3.36"
    d = json.loads(json.dumps(info.as_dict()))  # plain values only: JSON takes them as they are
    assert d["accelerator"] == "CUDA" and d["summary"].startswith("CUDA (NVIDIA H200), CPU")
    assert d["backends"] == ["CUDA", "CPU"] and d["gpu_offload"] is True
    assert d["devices"][0] == {
        "name": "CUDA0",
        "description": "NVIDIA H200",
        "kind": "gpu",
        "backend": "CUDA",
        "memory_total": 1 << 37,
        "memory_free": 1 << 36,
    }


def test_the_cpu_variant_and_its_instructions_name_the_cpu_part():
    cpu = DeviceInfo("CPU", "AMD EPYC", "cpu", "CPU", 1 << 34, 1 << 33)
    system = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1"
    info = BackendInfo("0.3.36", False, ("CPU",), (cpu,), system, False, "zen4", "checked")
    assert info.cpu_label == "CPU · zen4 / AVX-512 VNNI BF16"
    assert info.summary() == "CPU · zen4 / AVX-512 VNNI BF16 · llama-cpp-python 0.3.36"
    d = info.as_dict()
    assert (d["cpu_variant"], d["cpu_variant_how"], d["cpu_label"]) == (
        "zen4",
        "checked",
        "CPU · zen4 / AVX-512 VNNI BF16",
    )


@pytest.mark.timeout(120)
def test_version_json_prints_app_version_and_backend(capsys):
    code, out = run(capsys, "version", "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["c2s_desktop"] == APP_VERSION
    backend = data["backend"]
    # What the command prints is what the library reports here (free memory moves).
    expected = json.loads(json.dumps(backend_info().as_dict()))
    for d in (*backend["devices"], *expected["devices"]):
        d.pop("memory_free")
    assert backend == expected
    assert backend["llama_cpp_python"] == importlib.metadata.version("llama_cpp_python")


def test_plain_version_is_unchanged(capsys):
    assert run(capsys, "version") == (0, f"{APP_VERSION}\n")
