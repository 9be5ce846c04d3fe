"""The ``c2s`` command: output format, exit codes and one-line errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from c2s_desktop.cli import main
from c2s_desktop.core.dataset import open_dataset
from c2s_desktop.core.sentences import cell_sentences

from .conftest import sha256, write_h5ad


def run(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``c2s ARGS`` in-process; returns (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main([*map(str, args)])
        raise SystemExit(0)
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out, captured.err


def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_info_text_and_json(capsys, real_h5ad):
    code, out, _ = run(capsys, "info", real_h5ad)
    assert code == 0
    assert "700 cells × 765 genes" in out and "X_umap" in out and "cell_type (10)" in out
    code, out, _ = run(capsys, "info", real_h5ad, "--json")
    facts = json.loads(out)
    assert (facts["n_cells"], facts["n_genes"], facts["source"]) == (700, 765, "X")
    assert facts["sources"][0]["kind"] == "counts"
    assert facts["organism"] == "Homo sapiens"
    assert facts["embeddings"] == {"X_pca": 20, "X_umap": 2}


def test_sentences_csv_matches_core_and_keeps_input(capsys, real_h5ad, tmp_path):
    before = sha256(real_h5ad)
    out = tmp_path / "s.csv"
    code, _, err = run(
        capsys, "sentences", real_h5ad, "-o", out, "--obs", "cell_type", "--obs", "louvain"
    )
    assert code == 0, err
    rows = read_csv(out)
    with open_dataset(real_h5ad) as ds:
        expected = cell_sentences(ds)
        ids = list(ds.cell_ids)
        types = list(ds.obs["cell_type"].astype(str))
    assert list(rows[0]) == ["cell_id", "cell_sentence", "cell_type", "louvain"]
    assert [r["cell_id"] for r in rows] == ids
    assert [r["cell_sentence"] for r in rows] == expected
    assert [r["cell_type"] for r in rows] == types
    assert all("  " not in r["cell_sentence"] for r in rows)
    assert sha256(real_h5ad) == before


def test_top_k_and_comma_separated_obs(capsys, real_h5ad, tmp_path):
    out = tmp_path / "s.csv"
    code, _, _ = run(
        capsys, "sentences", real_h5ad, "-o", out, "--top-k", "5", "--obs", "cell_type,louvain"
    )
    assert code == 0
    rows = read_csv(out)
    assert all(len(r["cell_sentence"].split(" ")) <= 5 for r in rows)
    assert set(rows[0]) == {"cell_id", "cell_sentence", "cell_type", "louvain"}


def test_quoting_of_awkward_ids_and_values(capsys, tmp_path):
    X = sp.csr_matrix(np.array([[1, 2], [0, 3]], dtype=np.float32))
    obs = pd.DataFrame({"note": ['say "hi"', "a,b"]}, index=["id,1", 'id"2'])
    path = write_h5ad(tmp_path / "q.h5ad", X, ["A", "B"], obs=obs)
    out = tmp_path / "q.csv"
    assert run(capsys, "sentences", path, "-o", out, "--obs", "note")[0] == 0
    rows = read_csv(out)
    assert rows == [
        {"cell_id": "id,1", "cell_sentence": "B A", "note": 'say "hi"'},
        {"cell_id": 'id"2', "cell_sentence": "B", "note": "a,b"},
    ]


def test_all_zero_cells_warn_with_count(capsys, tmp_path, counts_matrix):
    path = write_h5ad(tmp_path / "z.h5ad", counts_matrix)
    code, _, err = run(capsys, "sentences", path, "-o", tmp_path / "z.csv")
    assert code == 0
    assert "1 cells have no expressed genes" in err.replace("\n", " ")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.h5ad", "file not found"),
        (lambda d: d, "folder without matrix.mtx"),
        (lambda d: (d / "t.txt").write_text("x") and d / "t.txt", "not an HDF5"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, make, message):
    path = make(tmp_path)
    code, out, err = run(capsys, "sentences", path, "-o", tmp_path / "o.csv")
    assert code == 2
    assert err.strip().count("\n") == 0, err
    assert err.startswith("error: ") and str(path) in err and message in err
    assert not (tmp_path / "o.csv").exists()


def test_existing_output_is_not_overwritten_without_flag(capsys, real_h5ad, tmp_path):
    out = tmp_path / "s.csv"
    out.write_text("keep me")
    code, _, err = run(capsys, "sentences", real_h5ad, "-o", out)
    assert code == 2 and "--overwrite" in err
    assert out.read_text() == "keep me"
    assert run(capsys, "sentences", real_h5ad, "-o", out, "--overwrite")[0] == 0
    assert out.read_text().startswith("cell_id,cell_sentence")


def test_unknown_obs_column_and_bad_output_folder(capsys, real_h5ad, tmp_path):
    code, _, err = run(capsys, "sentences", real_h5ad, "-o", tmp_path / "s.csv", "--obs", "nope")
    assert code == 2 and "'nope'" in err and "cell_type" in err
    assert list(tmp_path.iterdir()) == []
    code, _, err = run(capsys, "sentences", real_h5ad, "-o", tmp_path / "no" / "s.csv")
    assert code == 2 and "folder does not exist" in err


def test_failure_midway_leaves_no_partial_output(capsys, tmp_path):
    X = sp.csr_matrix(np.ones((1100, 500), dtype=np.float32))
    path = write_h5ad(tmp_path / "x.h5ad", X, [f"G{i}" for i in range(500)])
    with h5py.File(path, "r+") as f:
        f["X/data"][300_000] = np.nan
    before = sha256(path)
    code, _, err = run(capsys, "sentences", path, "-o", tmp_path / "s.csv")
    assert code == 2 and "NaN" in err and "cell600" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.h5ad"]
    assert sha256(path) == before


def test_source_and_symbols_options(capsys, tmp_path, counts_matrix):
    n = counts_matrix.shape[1]
    var = pd.DataFrame({"sym": [f"s{i}" for i in range(n)]}, index=[f"g{i}" for i in range(n)])
    path = write_h5ad(tmp_path / "x.h5ad", counts_matrix, var=var, layers={"counts": counts_matrix})
    out = tmp_path / "s.csv"
    code, _, err = run(
        capsys, "sentences", path, "-o", out, "--source", "layer:counts", "--symbols", "sym"
    )
    assert code == 0, err
    assert read_csv(out)[0]["cell_sentence"].split(" ")[0].startswith("S")
    code, _, err = run(capsys, "sentences", path, "-o", out, "--source", "raw", "--overwrite")
    assert code == 2 and "no expression source 'raw'" in err and "layer:counts" in err
    code, _, err = run(capsys, "sentences", path, "-o", out, "--symbols", "nope", "--overwrite")
    assert code == 2 and "no gene column 'nope'" in err


def test_console_script_runs_as_a_process(real_h5ad, tmp_path):
    bad = tmp_path / "bad.h5ad"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    proc = subprocess.run(
        [sys.executable, "-m", "c2s_desktop.cli", "info", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {bad}:") and "Traceback" not in proc.stderr


def test_usage_errors_are_one_line(capsys, real_h5ad, tmp_path):
    code, _, err = run(capsys, "sentences", real_h5ad, "-o", tmp_path / "s.csv", "--top-k", "0")
    assert code == 2 and err.startswith("error: ") and err.strip().count("\n") == 0
    code, _, err = run(capsys, "sentences", real_h5ad)
    assert code == 2 and "--output" in err and err.strip().count("\n") == 0
