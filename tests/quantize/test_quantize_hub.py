"""Hub access: file selection, progress/cancel, and clear errors offline (never the network)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from c2s_quantize.errors import Cancelled, QuantizeError
from c2s_quantize.hub import _progress_class, _select

REPO = "vandijklab/C2S-Pythia-410m-cell-type-prediction"
# The 410M repo's layout: weights plus training state nobody needs.
FILES_410M = {
    "config.json": 899,
    "model.safetensors": 1_621_370_880,
    "optimizer.pt": 3_242_829_000,
    "rng_state.pth": 14_000,
    "scheduler.pt": 1_000,
    "training_args.bin": 5_000,
    "tokenizer.json": 2_114_000,
    "tokenizer_config.json": 300,
    "special_tokens_map.json": 100,
    "trainer_state.json": 9_000,
    "README.md": 3_000,
}


def test_only_needed_files_are_selected():
    names = [f.name for f in _select(REPO, FILES_410M, allow_pickle=False)]
    assert names == [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "model.safetensors",
    ]


def test_pickle_only_repo_needs_allow_pickle():
    files = {"config.json": 1, "pytorch_model.bin": 10, "optimizer.pt": 20, "tokenizer.json": 1}
    with pytest.raises(QuantizeError, match="--allow-pickle"):
        _select(REPO, files, allow_pickle=False)
    picked = [f.name for f in _select(REPO, files, allow_pickle=True)]
    assert picked == ["config.json", "tokenizer.json", "pytorch_model.bin"]


def test_download_progress_counts_resumed_bytes_and_honours_cancel():
    seen, cancel = [], threading.Event()
    bar = _progress_class(seen.append, cancel)(total=100, initial=40, desc="x", unit="B")
    bar.update(10)
    bar.set_description("ignored")
    assert seen == [40, 50]
    cancel.set()
    with pytest.raises(Cancelled):
        bar.update(10)


def run_cli_offline(tmp_path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a child process whose hub access cannot reach the network."""
    return subprocess.run(
        [sys.executable, "-m", "c2s_quantize.cli", REPO, "-o", str(tmp_path / "m.gguf"), "-y"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "HF_HOME": str(tmp_path / "hf"), **env},
    )


def test_offline_mode_gives_a_clear_error(tmp_path):
    result = run_cli_offline(tmp_path, HF_HUB_OFFLINE="1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {REPO}: cannot download: offline mode is on (HF_HUB_OFFLINE) — "
        "connect to the internet, or pass a local checkpoint folder"
    ]
    assert not (tmp_path / "m.gguf").exists()


def test_unreachable_hub_gives_a_clear_error(tmp_path):
    result = run_cli_offline(tmp_path, HF_HUB_OFFLINE="0", HF_ENDPOINT="http://127.0.0.1:9")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the Hugging Face Hub" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
