"""The llama.cpp build the app runs on, as backend_info() and `c2s version --json` report it."""

from __future__ import annotations

import json

import llama_cpp
import pytest

from c2s_desktop import __version__
from c2s_desktop.cli import main
from c2s_desktop.core.engine.backend import BackendInfo, DeviceInfo, backend_info


def run(capsys, *args: str) -> tuple[int, str]:
    """Run ``c2s ARGS`` in-process; returns (exit code, stdout)."""
    with pytest.raises(SystemExit) as info:
        main(list(args))
        raise SystemExit(0)
    return int(info.value.code or 0), capsys.readouterr().out


def test_backend_info_lists_the_cpu_device_of_this_build():
    info = backend_info()
    assert info.llama_cpp_python == llama_cpp.__version__
    assert info.gpu_offload == bool(llama_cpp.llama_supports_gpu_offload())
    assert "CPU" in info.backends
    cpus = [d for d in info.devices if d.kind == "cpu"]
    assert len(cpus) == 1 and cpus[0].backend == "CPU"
    assert cpus[0].memory_total > 0  # the CPU device reports the machine's memory
    assert "CPU" in info.system_info  # llama_print_system_info: "CPU : SSE3 = 1 | ..."
    assert info.frozen is False
    if not info.gpu_offload:  # the default (CPU) build: models run on the CPU
        assert info.accelerator == "CPU"
        assert info.summary() == f"{info.cpu_label} · llama-cpp-python {llama_cpp.__version__}"
    # The CPU part names the instructions the kernels use (and the run-time variant, if any).
    assert info.cpu_label.startswith("CPU · ") and info.cpu_features
    assert info.cpu_features.split()[0] in ("AVX-512", "AVX2", "AVX", "SSE")


def test_a_gpu_device_names_the_accelerator():
    cpu = DeviceInfo("CPU", "AMD EPYC", "cpu", "CPU", 1 << 34, 1 << 33)
    gpu = DeviceInfo("CUDA0", "NVIDIA H200", "gpu", "CUDA", 1 << 37, 1 << 36)
    info = BackendInfo("0.3.36", True, ("CUDA", "CPU"), (gpu, cpu), "CUDA : ARCHS = 900", False)
    assert info.accelerator == "CUDA"
    assert info.summary() == "CUDA (NVIDIA H200), CPU · llama-cpp-python 0.3.36"
    d = info.as_dict()
    assert d["accelerator"] == "CUDA" and d["devices"][0]["name"] == "CUDA0"
    json.dumps(d)  # plain values only


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
    assert data["c2s_desktop"] == __version__
    backend = data["backend"]
    assert backend["llama_cpp_python"] == llama_cpp.__version__
    assert isinstance(backend["gpu_offload"], bool)
    assert any(d["kind"] == "cpu" for d in backend["devices"])
    assert backend["summary"].endswith(llama_cpp.__version__)
    assert backend["cpu_label"].startswith("CPU · ") and "cpu_variant" in backend


def test_plain_version_is_unchanged(capsys):
    assert run(capsys, "version") == (0, f"{__version__}\n")
