"""Which CPU variant of llama.cpp's kernels runs on this machine, chosen at run time (Qt-free).

A portable build (``-DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON``, see the Makefile) ships
one CPU backend module per x86 micro-architecture next to libllama (``libggml-cpu-haswell.so``,
``-skylakex``, ``-icelake``, ``-zen4``, ``-sapphirerapids`` ...) and links none of them:
llama-cpp-python never calls ``ggml_backend_load_all()``, so :func:`ensure_loaded` does it here,
before the first model loads. Each module rates this CPU itself (``ggml_backend_score()``: 0 when
the CPU lacks its instructions). The best-rated one is checked once in a child process (the
bundled demo model, and a Q4_0 copy of it, load and score); a variant whose check crashes or
fails is skipped for the next one. The verdict is remembered in the per-user cache, keyed by
the CPU's flags and the build. GPU backend modules in the same folder are loaded as well.

A build with the CPU backend linked in (``GGML_BACKEND_DL`` off) needs none of this.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import EngineError

log = logging.getLogger(__name__)

VARIANT_ENV = "C2S_CPU_VARIANT"
"""Name of a variant to load without a check (``haswell``, ``zen4`` ...)."""
VARIANT_PATH_ENV = "C2S_CPU_VARIANT_PATH"
"""Set by :func:`ensure_loaded` for child processes (the c2s-quantize worker reads it)."""
CRASH_ENV = "C2S_CPU_VARIANT_CRASH"
"""Comma-separated variants whose check aborts, as a broken variant would (tests)."""
CACHE_FILE = "cpu-variant.json"
CHECK_TIMEOUT_S = 120.0
GPU_MODULES = ("cuda", "hip", "musa", "vulkan", "metal", "sycl", "opencl", "blas")

_lock = threading.Lock()
_loaded: Loaded | None = None


@dataclass(frozen=True)
class Variant:
    """One CPU backend module and how well it suits this CPU (higher is better, 0: unusable)."""

    name: str
    path: Path
    score: int


@dataclass(frozen=True)
class Loaded:
    """What :func:`ensure_loaded` loaded: the CPU variant (None for a linked-in CPU backend),
    how it was chosen, and the GPU modules that registered a backend."""

    variant: str | None
    how: str  # linked, checked, remembered, inherited, forced, best-rated
    skipped: tuple[str, ...] = ()
    gpu_modules: tuple[str, ...] = ()


def lib_dir() -> Path:
    """The folder llama-cpp-python loads its libraries from (``$LLAMA_CPP_LIB_PATH`` wins)."""
    override = os.environ.get("LLAMA_CPP_LIB_PATH")
    if override:
        return Path(override)
    import llama_cpp

    return Path(llama_cpp.__file__).resolve().parent / "lib"


def _module_name(kind: str) -> str:
    return f"ggml-{kind}.dll" if sys.platform == "win32" else f"libggml-{kind}.so"


def module_files(folder: Path | None = None) -> dict[str, Path]:
    """CPU variant modules in ``folder``: ``{"haswell": .../libggml-cpu-haswell.so, ...}``."""
    folder = folder or lib_dir()
    prefix, suffix = _module_name("cpu-").split(".")[0], Path(_module_name("cpu")).suffix
    out = {}
    for path in sorted(folder.glob(f"{prefix}*{suffix}")):
        name = path.name[len(prefix) : -len(suffix)]
        if name:
            out[name] = path
    return out


def rank(files: dict[str, Path]) -> list[Variant]:
    """The usable variants, best first, by each module's own ``ggml_backend_score()``."""
    found = []
    for name, path in files.items():
        try:
            fn = ctypes.CDLL(str(path)).ggml_backend_score
        except (OSError, AttributeError) as exc:
            log.warning("CPU variant %s cannot be opened: %s", name, exc)
            continue
        fn.argtypes, fn.restype = [], ctypes.c_int
        score = int(fn())
        if score > 0:
            found.append(Variant(name, path, score))
    return sorted(found, key=lambda v: -v.score)


def loaded() -> Loaded | None:
    """What :func:`ensure_loaded` loaded in this process (None before it ran)."""
    return _loaded


def ensure_loaded(*, check: bool = True) -> Loaded:
    """Load llama.cpp's backend modules once per process (see the module docstring).

    ``check=False`` loads the best-rated variant without the child-process check (the check's
    own child uses it). Raises :class:`EngineError` when no variant works.
    """
    global _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        ggml = ggml_library()
        from llama_cpp._logger import set_verbose

        set_verbose(False)  # ggml's info lines ("load_backend: ...") are not for users
        if ggml.ggml_backend_reg_count() > 0:  # CPU backend linked in: nothing to load
            _loaded = Loaded(None, "linked")
            return _loaded
        folder = lib_dir()
        gpus = tuple(k for k in GPU_MODULES if _load_module(ggml, folder / _module_name(k)))
        files = module_files(folder)
        if not files:
            raise EngineError(
                f"llama.cpp's CPU backend modules are missing from {folder}",
                hint="reinstall the app (or rebuild llama-cpp-python with the Makefile)",
            )
        variant, how, skipped = _choose(files, check)
        if not _load_module(ggml, variant.path):
            raise EngineError(f"llama.cpp could not load its CPU backend {variant.path.name}")
        os.environ[VARIANT_PATH_ENV] = str(variant.path)
        _loaded = Loaded(variant.name, how, skipped, gpus)
        log.info("llama.cpp CPU variant %s (%s)", variant.name, how)
        return _loaded


def _choose(files: dict[str, Path], check: bool) -> tuple[Variant, str, tuple[str, ...]]:
    inherited = Path(os.environ.get(VARIANT_PATH_ENV, "") or os.devnull)
    for name, path in files.items():  # chosen (and checked) by the parent process
        if inherited.is_file() and path.samefile(inherited):
            return Variant(name, path, 0), "inherited", ()
    forced = os.environ.get(VARIANT_ENV, "").strip()
    if forced:
        if forced not in files:
            raise EngineError(
                f"{VARIANT_ENV}={forced} names no CPU variant of this build",
                hint=f"use one of: {', '.join(files)}",
            )
        return Variant(forced, files[forced], 0), "forced", ()
    ranked = rank(files)
    if not ranked:
        raise EngineError("no CPU variant of llama.cpp runs on this processor")
    if not check:
        return ranked[0], "best-rated", ()
    key = cache_key(files)
    remembered = _read_cache().get(key)
    by_name = {v.name: v for v in ranked}
    if remembered in by_name:
        return by_name[remembered], "remembered", ()
    skipped: list[str] = []
    for variant in ranked:
        problem = check_variant(variant)
        if problem is None:
            _remember(key, variant.name)
            return variant, "checked", tuple(skipped)
        log.warning("CPU variant %s failed its check (%s); trying the next", variant.name, problem)
        skipped.append(variant.name)
    raise EngineError(
        f"every CPU variant of llama.cpp failed its check on this computer ({', '.join(skipped)})",
        hint="report this with the log file; the app cannot run models here",
    )


# -- the check ---------------------------------------------------------------------------------
def check_variant(variant: Variant, timeout: float = CHECK_TIMEOUT_S) -> str | None:
    """Load ``variant`` in a child process and score with the demo model (Q8_0 and Q4_0);
    None when it works, else what went wrong."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_probe, args=(child, variant.name), name="c2s-cpu-check", daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout):
            return f"no answer within {timeout:.0f} s" if proc.is_alive() else _death(proc)
        try:
            answer = parent.recv()
        except (EOFError, OSError):
            return _death(proc)
    finally:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join()
        parent.close()
    return None if answer == "ok" else str(answer)


def _death(proc: Any) -> str:
    proc.join(timeout=5)
    code = proc.exitcode
    return f"the check process died (exit code {code})"


def _probe(conn: Any, name: str) -> None:
    """Child: load variant ``name``, then score with the demo model and a Q4_0 copy of it."""
    os.environ.pop(VARIANT_PATH_ENV, None)
    os.environ[VARIANT_ENV] = name
    os.environ["GGML_NO_BACKTRACE"] = "1"
    _quiet_stderr()
    try:
        ensure_loaded(check=False)
        if name in {n.strip() for n in os.environ.get(CRASH_ENV, "").split(",")}:
            os.abort()  # what a variant with an illegal instruction or a bad kernel does
        from ..model_store import demo_model_path

        with tempfile.TemporaryDirectory(prefix="c2s-cpu-check-") as tmp:
            q4 = Path(tmp) / "demo.q4_0.gguf"
            _quantize(demo_model_path(), q4, 2)  # LLAMA_FTYPE_MOSTLY_Q4_0
            for path in (demo_model_path(), q4):
                problem = _score_once(path)
                if problem:
                    conn.send(f"{path.name}: {problem}")
                    return
        conn.send("ok")
    except Exception as exc:  # noqa: BLE001 - any failure disqualifies the variant
        conn.send(f"{type(exc).__name__}: {exc}")


def _quantize(src: Path, dst: Path, ftype: int) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.nthread, params.allow_requantize = ftype, 1, True
    if llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)):
        raise EngineError(f"could not make a Q4_0 copy of {src.name}")


def _score_once(path: Path) -> str | None:
    """Decode a cell-sentence prompt with llama.cpp itself (the kernels label scoring uses:
    quantized matrix products, flash attention); None when its log-probabilities are sane."""
    import llama_cpp
    import numpy as np

    llm = llama_cpp.Llama(
        str(path), n_ctx=256, n_threads=2, logits_all=True, flash_attn=True, verbose=False
    )
    try:
        ids = llm.tokenize(("CD3D CD3E IL7R LTB MALAT1 " * 8).encode(), add_bos=True)
        llm.eval(ids)
        logits = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
    finally:
        llm.close()
    if not np.all(np.isfinite(logits)):
        return "non-finite logits"
    logp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    chosen = logp[np.arange(len(ids) - 1), ids[1:]]
    return None if np.all(chosen < 0) else "log-probabilities above zero"


def _quiet_stderr() -> None:
    with contextlib.suppress(OSError):
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 2)
        os.close(fd)


# -- the remembered verdict --------------------------------------------------------------------
def cache_key(files: dict[str, Path]) -> str:
    """This CPU's flags and this build's modules (names, sizes, mtimes), hashed."""
    h = hashlib.sha1()
    h.update(_cpu_flags().encode())
    for name, path in sorted(files.items()):
        st = path.stat()
        h.update(f"|{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _cpu_flags() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", errors="replace") as f:
        for line in f:
            if line.startswith(("flags", "Features")):
                return " ".join(sorted(line.split(":", 1)[1].split()))
    return f"{platform.machine()} {platform.processor()}"


def cache_path() -> Path:
    from ..inspect_child import cache_dir

    return cache_dir() / CACHE_FILE


def _read_cache() -> dict[str, str]:
    try:
        data = json.loads(cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _remember(key: str, name: str) -> None:
    data = _read_cache()
    data[key] = name
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".cpu-variant-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache only costs the check next time
        log.warning("could not remember the CPU variant in %s: %s", path, exc)


# -- ggml --------------------------------------------------------------------------------------
def ggml_library() -> Any:
    """The ctypes handle of the libggml that libllama links (its backend registry).

    A wheel stores ``libggml.so`` and ``libggml.so.0`` as two files, and llama-cpp-python's
    ``_ggml`` opens the first while libllama links the second: two registries. Backends must be
    registered in libllama's, so open the file by the name libllama's loader used.
    """
    import llama_cpp  # noqa: F401 - loads libllama and, through it, its libggml

    folder = lib_dir()
    linked = [folder / n for n in ("libggml.so.0", "libggml.0.dylib", "ggml.dll")]
    path = next((p for p in linked if p.is_file()), None)
    if path is not None:
        lib = ctypes.CDLL(str(path))
    else:
        from llama_cpp import _ggml

        lib = _ggml.libggml
    lib.ggml_backend_reg_count.argtypes, lib.ggml_backend_reg_count.restype = [], ctypes.c_size_t
    lib.ggml_backend_load.argtypes = [ctypes.c_char_p]
    lib.ggml_backend_load.restype = ctypes.c_void_p
    return lib


def _load_module(ggml: Any, path: Path) -> bool:
    """Register the backend in module ``path``; False when absent or unusable here."""
    if not path.is_file():
        return False
    return bool(ggml.ggml_backend_load(os.fsencode(path)))


def features_label(system_info: str) -> str:
    """``AVX-512 VNNI BF16 AMX`` from llama.cpp's system info (``CPU : AVX512 = 1 | ...``)."""
    cpu = system_info.split("CPU :", 1)[-1]
    flags = {p.split("=")[0].strip() for p in cpu.split("|") if p.strip().endswith("= 1")}
    tier = next(
        (
            label
            for flag, label in (
                ("AVX512", "AVX-512"),
                ("AVX2", "AVX2"),
                ("AVX", "AVX"),
                ("SSE3", "SSE"),
            )
            if flag in flags
        ),
        "",
    )
    extras = [
        label
        for label, names in (
            ("VNNI", ("AVX512_VNNI", "AVX_VNNI")),
            ("BF16", ("AVX512_BF16",)),
            ("AMX", ("AMX_INT8",)),
            ("NEON", ("NEON",)),
            ("SVE", ("SVE",)),
        )
        if flags.intersection(names)
    ]
    return " ".join([tier, *extras]).strip()
