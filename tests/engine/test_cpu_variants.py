"""llama.cpp's CPU variant chosen at run time: ranking, the one-time check, its fallback when a
variant crashes, the remembered verdict, and what backend_info() reports.

The fallback is tested with a variant that really aborts in its check process (``CRASH_ENV``);
each scenario runs in a fresh interpreter because the backends load once per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from c2s_desktop.core.engine import cpu_variants as cv
from c2s_desktop.core.engine.backend import backend_info

LOADED = cv.ensure_loaded()
dynamic = pytest.mark.skipif(
    LOADED.how == "linked",
    reason="llama-cpp-python was built with its CPU backend linked in (no GGML_BACKEND_DL)",
)
SCRIPT = """
import dataclasses, json
from c2s_desktop.core.engine import cpu_variants as cv
from c2s_desktop.core.errors import C2SError
try:
    print(json.dumps(dataclasses.asdict(cv.ensure_loaded())))
except C2SError as exc:
    print(json.dumps({"error": exc.one_line()}))
"""


def fresh(tmp_path: Path, **env: str) -> dict:
    """ensure_loaded() in a new interpreter with its own cache folder and ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("C2S_CPU_VARIANT")}
    base["C2S_CACHE_DIR"] = str(tmp_path / "cache")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=base | env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_features_label_names_the_widest_instructions():
    avx512 = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 1 | AMX_INT8 = 1"
    assert cv.features_label(avx512) == "AVX-512 VNNI AMX"
    assert cv.features_label("CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX_VNNI = 1") == "AVX2 VNNI"
    assert cv.features_label("CPU : SSE3 = 1 | AVX = 1 | AVX2 = 0 | AVX512 = 0") == "AVX"
    assert cv.features_label("") == ""


@dynamic
def test_variants_are_ranked_by_their_own_score_and_the_best_is_loaded():
    ranked = cv.rank(cv.module_files())
    assert len(ranked) >= 2, "a portable x86 build has several usable variants"
    scores = [v.score for v in ranked]
    assert scores == sorted(scores, reverse=True) and min(scores) > 0
    assert LOADED.variant in {v.name for v in ranked}
    info = backend_info()
    assert info.cpu_variant == LOADED.variant
    assert info.cpu_label.startswith(f"CPU · {LOADED.variant} / ")
    assert info.summary().startswith(info.cpu_label) or info.gpu_offload


@dynamic
def test_the_chosen_variant_is_the_best_rated_one_that_passes_its_check(tmp_path):
    # On an AMX machine whose kernel does not grant the AMX state (this CI's), the
    # sapphirerapids variant dies of SIGILL in its check: the guard is what makes it usable.
    ranked = cv.rank(cv.module_files())
    chosen = fresh(tmp_path)
    names = [v.name for v in ranked]
    assert chosen["how"] == "checked" and chosen["variant"] in names
    above = names[: names.index(chosen["variant"])]
    assert chosen["skipped"] == above
    by_name = {v.name: v for v in ranked}
    assert cv.check_variant(by_name[chosen["variant"]]) is None
    for name in above:
        assert cv.check_variant(by_name[name]) is not None


@dynamic
def test_a_crashing_variant_falls_back_to_the_next_and_the_verdict_is_remembered(tmp_path):
    names = [v.name for v in cv.rank(cv.module_files())]
    usual = fresh(tmp_path / "a")["variant"]
    first = fresh(tmp_path / "b", **{cv.CRASH_ENV: usual})  # its check process aborts
    assert first["how"] == "checked"
    assert first["skipped"][-1] == usual
    assert names.index(first["variant"]) > names.index(usual)
    cache = json.loads((tmp_path / "b" / "cache" / cv.CACHE_FILE).read_text())
    assert list(cache.values()) == [first["variant"]]
    # The next start reads the verdict and checks nothing (the crash switch would show it).
    again = fresh(tmp_path / "b", **{cv.CRASH_ENV: ",".join(names)})
    assert (again["how"], again["variant"], again["skipped"]) == (
        "remembered",
        first["variant"],
        [],
    )


@dynamic
def test_a_forced_variant_is_loaded_unchecked_and_an_unknown_one_is_refused(tmp_path):
    last = cv.rank(cv.module_files())[-1].name
    forced = fresh(tmp_path, **{cv.VARIANT_ENV: last, cv.CRASH_ENV: last})
    assert (forced["variant"], forced["how"]) == (last, "forced")
    refused = fresh(tmp_path, **{cv.VARIANT_ENV: "pentium"})
    assert "C2S_CPU_VARIANT=pentium names no CPU variant" in refused["error"]
    assert last in refused["error"]  # the hint lists the real ones
