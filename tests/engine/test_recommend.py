"""The on-device type recommendation: real llama.cpp timing of the tiny GGUFs in several types."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from c2s_desktop.core import recommend
from c2s_desktop.core.engine.base import EngineOptions, ModelFileError
from c2s_desktop.core.recommend import RecommendError, recommend_type, variants_of
from tests.test_cli import run

OPTIONS = EngineOptions(threads=1)  # one thread: a busy 2-core box spin-waits with two


@pytest.fixture
def cache_file(tmp_path, monkeypatch):
    path = tmp_path / "cache" / recommend.CACHE_FILE
    monkeypatch.setattr(recommend, "cache_path", lambda: path)
    return path


def test_fastest_type_whose_labels_agree_is_recommended_and_remembered(
    gguf, cache_file, monkeypatch
):
    q8, q4 = gguf("gptneox", "q8_0"), gguf("gptneox", "q4_0")
    seen = []
    result = recommend_type(
        [q4, q8], options=OPTIONS, n_cells=2, n_labels=6, progress=lambda f, m: seen.append((f, m))
    )
    assert [m.quant for m in result.measurements] == ["Q8_0", "Q4_0"]  # most precise first
    ref, other = result.measurements
    assert ref.agreement == 1.0 and len(ref.labels) == result.n_cells == 2
    assert set(ref.labels) <= set(recommend.LABELS[:6])
    assert other.agreement == sum(a == b for a, b in zip(other.labels, ref.labels, strict=True)) / 2
    assert all(m.seconds_per_cell > 0 for m in result.measurements)
    ok = [m for m in result.measurements if m.agreement >= result.min_agreement]
    assert result.choice == min(ok, key=lambda m: m.seconds_per_cell).path
    assert f"{result.chosen.seconds_per_cell:.2f} s/cell" in result.summary()
    assert result.cpu.startswith("CPU") and result.cpu in result.summary()
    assert seen[-1][0] == 1.0 and not result.cached

    # remembered: the same files and settings are not measured again
    def no_measuring(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(recommend, "_measure", no_measuring)
    again = recommend_type([q8, q4], options=OPTIONS, n_cells=2, n_labels=6)
    assert again.cached and again.measurements == result.measurements
    assert json.loads(cache_file.read_text())  # written, valid JSON
    with pytest.raises(AssertionError, match="measured again"):  # other settings: a new key
        recommend_type([q8, q4], options=OPTIONS, n_cells=3, n_labels=6)
    with pytest.raises(AssertionError, match="measured again"):
        recommend_type([q8, q4], options=OPTIONS, n_cells=2, n_labels=6, use_cache=False)


def test_only_variants_of_one_model_are_compared(gguf, tmp_path):
    q8, q4, gemma = gguf("gptneox", "q8_0"), gguf("gptneox", "q4_0"), gguf("gemma2", "q8_0")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf")
    assert variants_of(q4, [gemma, junk, q8, q4]) == [q8.resolve(), q4.resolve()]
    with pytest.raises(RecommendError, match="not one model in different types"):
        recommend_type([q8, gemma], options=OPTIONS)
    with pytest.raises(ModelFileError):
        recommend_type([junk], options=OPTIONS)
    with pytest.raises(RecommendError, match="labels"):
        recommend_type([q8], n_labels=99)


def test_bench_types_command(gguf, cache_file, capsys):
    q8, q4 = gguf("gptneox", "q8_0"), gguf("gptneox", "q4_0")
    args = ["bench-types", q8, q4, "--cells", "2", "--labels", "4", "--threads", "1"]
    code, out, err = run(capsys, *args, "--no-cache")
    assert code == 0, err
    assert "2 cells x 4 labels on CPU" in err
    lines = out.splitlines()
    assert sum(line.startswith("*") for line in lines) == 1  # the recommended one is marked
    assert any("Q8_0" in line and "s/cell" in line and str(q8) in line for line in lines)
    assert lines[-1].startswith("recommended: Q")
    code, out, err = run(capsys, *args, "--json")
    assert code == 0 and "remembered" not in err
    data = json.loads(out)
    assert data["cached"] is True and len(data["measurements"]) == 2
    code, _, err = run(capsys, "bench-types", q8.with_name("missing.gguf"))
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1


def test_a_faster_type_whose_labels_differ_is_not_recommended(gguf, cache_file, monkeypatch):
    # The rule itself, on fixed measurements: the real timing runs in the tests above, but a
    # tiny model's quantized labels cannot be made to disagree on purpose.
    q8, q4 = gguf("gptneox", "q8_0"), gguf("gptneox", "q4_0")
    fixed = {q8.resolve(): (2.0, ("B cell", "platelet")), q4.resolve(): (1.0, ("B cell", "B cell"))}
    monkeypatch.setattr(recommend, "_measure", lambda path, *a: fixed[Path(path).resolve()])
    strict = recommend_type([q8, q4], n_cells=2, use_cache=False)
    assert [m.agreement for m in strict.measurements] == [1.0, 0.5]
    assert strict.chosen.quant == "Q8_0" and "most precise" in strict.summary()
    lenient = recommend_type([q8, q4], n_cells=2, min_agreement=0.5, use_cache=False)
    assert lenient.chosen.quant == "Q4_0"
    assert "2.0x the speed of Q8_0, same labels on 1/2 cells" in lenient.summary()
