"""End to end: convert + quantize + verify from the command line and the Python API."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import THREADS

from c2s_quantize import pipeline, verify
from c2s_quantize.pipeline import quantize_checkpoint
from c2s_quantize.verify import verify_gguf

REPO = "vandijklab/C2S-Scale-Gemma-2-2B"


@pytest.mark.slow
def test_quantize_and_verify_against_transformers(checkpoints, tmp_path, cli):
    out = tmp_path / "gemma.q4_k_m.gguf"
    code, stdout, err = cli(
        [str(checkpoints["gemma2"]), "-o", str(out), "-t", "q4_k_m", "--verify", "--repo-id", REPO]
    )
    assert code == 0, err
    assert "verification PASSED" in stdout
    report = json.loads((tmp_path / "gemma.q4_k_m.gguf.verify.json").read_text())
    assert report["summary"]["tokenization_identical"] is True
    assert report["reference"].startswith("transformers float32")
    assert "| identical token ids | yes" in (tmp_path / "gemma.q4_k_m.gguf.verify.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "gemma.q4_k_m.gguf",
        "gemma.q4_k_m.gguf.verify.json",
        "gemma.q4_k_m.gguf.verify.md",
    ]
    code, stdout, _ = cli(["info", str(out)])
    assert code == 0
    assert "type: q4_k_m" in stdout
    assert f"c2s.source_repo: {REPO}" in stdout
    assert "c2s.license: CC-BY-4.0 (weights)" in stdout


def test_verify_command_against_a_reference_gguf(gguf, tmp_path, cli):
    prefix = tmp_path / "report"
    args = ["verify", str(gguf("gptneox", "f32")), str(gguf("gptneox", "q8_0"))]
    code, stdout, err = cli([*args, "--report", str(prefix)])
    assert code == 0, err
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["candidate_type"] == "q8_0"
    assert data["summary"]["top1_agreement"] >= 0.99
    assert "(f32)" in data["reference"]


def test_verify_fails_loudly_below_the_threshold(gguf, tmp_path, cli):
    args = ["verify", str(gguf("gptneox", "f32")), str(gguf("gptneox", "q8_0"))]
    code, stdout, _ = cli([*args, "--min-top1", "1.01", "--report", str(tmp_path / "r")])
    assert code == 1
    assert "verification FAILED" in stdout


def test_without_torch_a_quantized_gguf_is_checked_against_its_lossless_gguf(
    checkpoints, tmp_path, monkeypatch
):
    monkeypatch.setattr(pipeline, "transformers_available", lambda: False)
    monkeypatch.setattr(verify, "transformers_available", lambda: False)
    out = tmp_path / "m.q8_0.gguf"
    result = quantize_checkpoint(checkpoints["gemma2"], out, "q8_0", verify=True, threads=THREADS)
    assert result.verification is not None
    assert result.verification.reference.startswith("lossless bf16 GGUF")
    assert result.verification.passed and result.verification.label_agreement == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["m.q8_0.gguf"]

    report = verify_gguf(
        checkpoints["gemma2"], out, threads=THREADS
    )  # folder reference, torch "missing"
    assert report.reference.startswith("lossless bf16 GGUF")
    assert report.top1_agreement == result.verification.top1_agreement


def test_lossless_output_without_torch_explains_why_nothing_was_compared(
    checkpoints, tmp_path, monkeypatch
):
    monkeypatch.setattr(pipeline, "transformers_available", lambda: False)
    result = quantize_checkpoint(
        checkpoints["gemma2"], tmp_path / "m.gguf", "bf16", verify=True, threads=THREADS
    )
    assert result.verification is None
    assert "install torch and transformers" in result.note


def test_progress_is_reported_from_start_to_end(checkpoints, tmp_path):
    seen: list[tuple[str, float]] = []
    quantize_checkpoint(
        checkpoints["gptneox"],
        tmp_path / "m.gguf",
        "q4_0",
        progress=lambda m, f: seen.append((m, f)),
    )
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    messages = " ".join(m for m, _ in seen)
    for step in ("hashing", "converting", "quantizing"):
        assert step in messages


def test_conversion_quantization_and_verification_work_without_torch(checkpoints, tmp_path):
    script = f"""
import sys

import pytest
sys.modules["torch"] = sys.modules["transformers"] = None  # importing them now fails
from pathlib import Path
from c2s_quantize.pipeline import quantize_checkpoint
r = quantize_checkpoint(Path(sys.argv[1]), Path(sys.argv[2]), "q8_0", verify=True,
                        threads={THREADS})
assert r.verification.passed and r.verification.reference.startswith("lossless f32")
"""
    out = tmp_path / "m.gguf"
    result = subprocess.run(
        [sys.executable, "-c", script, str(checkpoints["gptneox"]), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert out.is_file()


def test_repack_friendly_types_are_offered_and_recommended(checkpoints, tmp_path, cli):
    # IQ4_NL, like Q4_0, is repacked by llama.cpp for fast CPU kernels; the report and --help
    # say which type to use on a CPU and on a GPU.
    out = tmp_path / "neox.iq4_nl.gguf"
    code, stdout, err = cli(
        [str(checkpoints["gptneox"]), "-o", str(out), "-t", "iq4_nl", "--verify"]
    )
    assert code == 0, err
    code, info, _ = cli(["info", str(out)])
    assert code == 0 and "type: iq4_nl" in info
    md = (tmp_path / "neox.iq4_nl.gguf.verify.md").read_text()
    assert "| cell-type label agreement |" in md
    assert "recommended: q4_0 for scoring on a CPU" in md and "q8_0 for a GPU" in md
    code, help_text, _ = cli(["--help"])
    assert "iq4_nl" in help_text and "recommended: q4_0" in " ".join(help_text.split())
