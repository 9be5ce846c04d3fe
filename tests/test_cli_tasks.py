"""``c2s`` model commands end to end on the demo model: outputs, provenance, exit codes."""

from __future__ import annotations

import json

import anndata as ad
import pytest

from c2s_desktop.core.resources import resource_path

from .conftest import sha256
from .test_cli import run

MODEL = resource_path("demo", "c2s-demo-pbmc.q8_0.gguf")
DATA = resource_path("demo", "pbmc_demo.h5ad")


def with_demo_model(capsys, *args: object) -> tuple[int, str, str]:
    """``c2s ARGS --model <demo model> --threads 1`` in-process: (exit code, stdout, stderr)."""
    return run(capsys, *args, "--model", MODEL, "--threads", "1")


def test_annotate_then_report(capsys, tmp_path):
    before = sha256(DATA)
    out, csv, html = tmp_path / "a.h5ad", tmp_path / "a.csv", tmp_path / "r.html"
    options = ["--csv", csv, "--candidates-from", "cell_type", "--cluster-key", "louvain"]
    options += ["--per-cluster", "1", "--mode", "representative", "--json"]
    code, stdout, err = with_demo_model(capsys, "annotate", DATA, "-o", out, *options)
    assert code == 0, err
    summary = json.loads(stdout)
    assert sum(summary["counts"].values()) == 700
    adata = ad.read_h5ad(out)
    assert adata.obs["c2s_cell_type"].notna().all()
    record = adata.uns["c2s"]["annotate"]
    assert record["input_sha256"] == before and record["model_sha256"] == sha256(MODEL)
    assert record["template_id"] == "cell2sentence-1.2.0/cell_type_prediction/0"
    params = json.loads(record["parameters"])
    assert params["mode_used"] == "representative" and params["clusters"] == "obs['louvain']"
    assert params["scoring"] == "exact log-likelihood"
    assert "labels scored by exact log-likelihood" in err
    assert csv.read_text().startswith("cell_id,c2s_cell_type,c2s_cell_type_prob\n")
    assert sha256(DATA) == before
    code, _, err = run(capsys, "report", out, "-o", html)
    assert code == 0, err
    assert "<svg" in html.read_text() and before in html.read_text()
    assert "Scoring: exact log-likelihood." in html.read_text()


@pytest.mark.slow
def test_selector_and_candidates_file(capsys, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("CD14+ Monocyte\nCD19+ B\nCD56+ NK\n")
    options = ["-o", tmp_path / "o.h5ad", "--candidates", labels, "--cells", "cell_type=CD19+ B"]
    code, stdout, err = with_demo_model(capsys, "annotate", DATA, *options, "--json")
    assert code == 0, err
    counts = json.loads(stdout)["counts"]
    assert set(counts) <= {"CD14+ Monocyte", "CD19+ B", "CD56+ NK"}
    assert sum(counts.values()) == 95


@pytest.mark.parametrize("cmd", [["embed", "-o", "e.h5ad"], ["summarize"], ["ask", "Which?"]])
def test_other_commands(capsys, tmp_path, cmd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stdout, err = with_demo_model(capsys, cmd[0], DATA, *cmd[1:], "--cells", "louvain=3")
    assert code == 0, err
    if cmd[0] == "embed":
        assert ad.read_h5ad(tmp_path / "e.h5ad").obsm["X_c2s"].shape[1] == 256


def test_generate_writes_new_h5ad(capsys, tmp_path):
    out = tmp_path / "g.h5ad"
    options = ["--cell-type", "CD56+ NK", "-n", "2", "--reference", DATA, "-o", out]
    code, _, err = with_demo_model(capsys, "generate", *options)
    assert code == 0, err
    adata = ad.read_h5ad(out)
    assert adata.n_obs == 2 and "generate" in adata.uns["c2s"]


def test_bad_model_and_selector_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    code, _, err = run(capsys, "annotate", DATA, "--model", bad, "-o", tmp_path / "o.h5ad")
    assert code == 2 and str(bad) in err and err.count("\n") == 1
    code, _, err = with_demo_model(capsys, "summarize", DATA, "--cells", "nope=1")
    assert code == 2 and "no obs column 'nope'" in err
    assert not (tmp_path / "o.h5ad").exists()
