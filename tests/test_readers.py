"""Inputs a lab really has: Cell Ranger .h5 (v3+, v2) and matrix folders, duplicate gene names,
spike-ins, written from the 700 real PBMC counts and compared with the equivalent .h5ad."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from c2s_desktop.core.audit import file_sha256, folder_sha256
from c2s_desktop.core.dataset import open_dataset
from c2s_desktop.core.errors import DataError
from c2s_desktop.core.export import write_annotated_copy
from c2s_desktop.core.readers import (
    FORMAT_10X_H5_V2,
    FORMAT_10X_H5_V3,
    FORMAT_10X_MTX,
    is_matrix_folder,
)
from c2s_desktop.core.resources import resource_path
from c2s_desktop.core.sentences import cell_sentences

from .conftest import REAL_H5AD, write_h5ad
from .tenx import real_counts, write_h5_v2, write_h5_v3, write_mtx_folder
from .test_cli import read_csv, run

MODEL = resource_path("demo", "c2s-demo-pbmc.q8_0.gguf")


def snapshot(path: Path) -> dict[str, str]:
    """sha256 of a file, or of every file of a folder."""
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


@pytest.fixture(scope="module")
def h5ad_sentences() -> list[str]:
    with open_dataset(REAL_H5AD) as ds:
        return cell_sentences(ds)


BUILDERS = {
    "h5-v3": (lambda d: write_h5_v3(d / "filtered_feature_bc_matrix.h5"), FORMAT_10X_H5_V3),
    "h5-v2": (lambda d: write_h5_v2(d / "filtered_gene_bc_matrices.h5"), FORMAT_10X_H5_V2),
    "h5-v2-two-genomes": (
        lambda d: write_h5_v2(d / "barnyard.h5", genomes=("hg19", "mm10")),
        FORMAT_10X_H5_V2,
    ),
    "mtx-gz": (lambda d: write_mtx_folder(d / "filtered_feature_bc_matrix"), FORMAT_10X_MTX),
    "mtx-plain": (lambda d: write_mtx_folder(d / "plain", gz=False), FORMAT_10X_MTX),
    "mtx-v2-genes-tsv": (
        lambda d: write_mtx_folder(d / "v2", gz=False, legacy=True),
        FORMAT_10X_MTX,
    ),
}


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_cell_ranger_input_gives_the_sentences_of_the_h5ad(kind, tmp_path, h5ad_sentences):
    build, fmt = BUILDERS[kind]
    path = build(tmp_path)
    before = snapshot(path)
    with open_dataset(path) as ds:
        info = ds.info()
        assert (info.format, ds.n_cells, ds.n_genes) == (fmt, 700, 765)
        assert ds.path == path and info.path == str(path)
        assert ds.symbols.source == "gene_symbols" and ds.source.kind == "counts"
        assert list(ds.cell_ids) == list(real_counts().obs_names)
        assert ds.vocabulary.n_words == 765 and not info.warnings
        assert cell_sentences(ds) == h5ad_sentences
        assert ds.embedding_names() == {}
        rows = list(ds.matrix.iter_rows(4, np.arange(10)))
        assert sum(chunk.shape[0] for _, chunk in rows) == 10
    assert snapshot(path) == before


def test_cli_sentences_csv_equals_the_h5ad_csv(capsys, tmp_path):
    folder = write_mtx_folder(tmp_path / "mtx")
    before = snapshot(folder)
    a, b = tmp_path / "tenx.csv", tmp_path / "h5ad.csv"
    assert run(capsys, "sentences", folder, "-o", a)[0] == 0
    assert run(capsys, "sentences", REAL_H5AD, "-o", b)[0] == 0
    assert a.read_bytes() == b.read_bytes()
    assert snapshot(folder) == before
    code, out, err = run(capsys, "info", folder, "--json")
    facts = json.loads(out)
    assert code == 0 and facts["format"] == FORMAT_10X_MTX and facts["n_genes"] == 765


def test_other_feature_types_are_left_out_with_a_warning(capsys, tmp_path, h5ad_sentences):
    extra = {"Antibody Capture": 17, "CRISPR Guide Capture": 4}
    for path in (
        write_h5_v3(tmp_path / "multi.h5", extra=extra),
        write_mtx_folder(tmp_path / "multi", extra=extra),
    ):
        with open_dataset(path) as ds:
            assert ds.n_genes == 765 and set(ds.var["feature_types"]) == {"Gene Expression"}
            assert cell_sentences(ds) == h5ad_sentences
            assert ds.warnings == [
                "kept 765 Gene Expression features; left out 17 Antibody Capture, "
                "4 CRISPR Guide Capture features"
            ]
        code, _, err = run(capsys, "info", path)
        assert code == 0 and "17 Antibody Capture" in err.replace("\n", " ")


def test_only_antibody_capture_is_refused(tmp_path):
    adata = real_counts()[:, :0].copy()
    path = write_h5_v3(tmp_path / "adt.h5", adata, extra={"Antibody Capture": 5})
    with pytest.raises(DataError, match="no Gene Expression features .*5 Antibody Capture"):
        open_dataset(path)


def test_recognised_by_content_not_by_name(tmp_path, h5ad_sentences):
    renamed = write_h5_v3(tmp_path / "looks_like_anndata.h5ad")
    with open_dataset(renamed) as ds:
        assert ds.format == FORMAT_10X_H5_V3 and cell_sentences(ds) == h5ad_sentences
    plain = tmp_path / "data.h5"
    plain.write_bytes(REAL_H5AD.read_bytes())  # an AnnData file named .h5
    with open_dataset(plain) as ds:
        assert ds.format == "h5ad" and cell_sentences(ds) == h5ad_sentences
    assert is_matrix_folder(write_mtx_folder(tmp_path / "m")) and not is_matrix_folder(plain)


def test_folder_above_the_matrix_folder_opens(tmp_path, h5ad_sentences):
    write_mtx_folder(tmp_path / "outs" / "filtered_feature_bc_matrix")
    with open_dataset(tmp_path / "outs") as ds:
        assert cell_sentences(ds) == h5ad_sentences


# -- bad inputs: one line through `c2s info`, input untouched -----------------------------------
def _corrupt_h5(d: Path) -> Path:
    path = write_h5_v3(d / "corrupt.h5")
    data = bytearray(path.read_bytes())
    data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)  # second half zeroed
    path.write_bytes(bytes(data))
    return path


def _truncated_h5(d: Path) -> Path:
    path = write_h5_v3(d / "truncated.h5")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    return path


def _more_rows(d: Path) -> Path:
    folder = write_mtx_folder(d / "mismatch")
    lines = gzip.decompress((folder / "features.tsv.gz").read_bytes()).decode().splitlines()
    (folder / "features.tsv.gz").write_bytes(gzip.compress(("\n".join(lines[:-5]) + "\n").encode()))
    return folder


def _fewer_barcodes(d: Path) -> Path:
    folder = write_mtx_folder(d / "barcodes", gz=False)
    lines = (folder / "barcodes.tsv").read_text().splitlines()
    (folder / "barcodes.tsv").write_text("\n".join(lines[:-1]) + "\n")
    return folder


def _no_features(d: Path) -> Path:
    folder = write_mtx_folder(d / "nofeatures")
    (folder / "features.tsv.gz").unlink()
    return folder


def _bad_mtx(d: Path) -> Path:
    folder = write_mtx_folder(d / "badmtx", gz=False)
    (folder / "matrix.mtx").write_text("%%MatrixMarket matrix coordinate integer general\n")
    return folder


def _h5_shape_mismatch(d: Path) -> Path:
    path = write_h5_v3(d / "shape.h5")
    with h5py.File(path, "r+") as f:
        f["matrix/shape"][0] = 800
    return path


def _h5_other(d: Path) -> Path:
    path = d / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_group("images")
        f["table"] = np.arange(4)
    return path


BAD = {
    "corrupt-h5": (_corrupt_h5, "damaged"),
    "truncated-h5": (_truncated_h5, "truncated or corrupt"),
    "features-vs-rows": (
        _more_rows,
        "features.tsv lists 760 features but matrix.mtx.gz has 765 rows",
    ),
    "barcodes-vs-columns": (_fewer_barcodes, "lists 699 barcodes but matrix.mtx has 700 columns"),
    "missing-features": (_no_features, "a matrix folder without features.tsv[.gz] or genes.tsv"),
    "empty-folder": (lambda d: (d / "empty").mkdir() or d / "empty", "an empty folder without"),
    "mtx-no-size-line": (_bad_mtx, "no size line"),
    "h5-shape": (_h5_shape_mismatch, "lists 765 features but the matrix has 800 rows"),
    "h5-neither": (_h5_other, "neither AnnData nor Cell Ranger (top-level groups: images, table)"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_cell_ranger_input_gives_one_line(case, capsys, tmp_path):
    build, phrase = BAD[case]
    path = build(tmp_path)
    before = snapshot(path)
    code, out, err = run(capsys, "info", path)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert phrase in lines[0] and str(path) in lines[0], lines[0]
    assert "Traceback" not in err and snapshot(path) == before


# -- duplicate names, spike-ins, whitespace -----------------------------------------------------
def _with_duplicates() -> ad.AnnData:
    adata = real_counts()
    names = list(adata.var_names)
    names[1], names[2], names[5] = names[0], names[0], names[4]  # HES4 ×3, one more pair
    adata.var_names = names
    return adata


def test_exact_duplicate_names_are_merged_by_default(capsys, tmp_path):
    adata = _with_duplicates()
    path = write_h5_v3(tmp_path / "dups.h5", adata)
    X = sp.csr_matrix(adata.X)
    with open_dataset(path) as ds:
        info = ds.info()
        assert info.duplicates_merged == ["HES4 (3 columns)", f"{adata.var_names[4]} (2 columns)"]
        assert ds.vocabulary.n_words == 765 - 3
        assert any(w.startswith("2 gene names repeated, merged") for w in info.warnings)
        sentence = cell_sentences(ds, np.array([0]))[0].split(" ")
    expressed = {
        n.upper() for n, v in zip(adata.var_names, X[0].toarray()[0], strict=True) if v > 0
    }
    assert sorted(sentence) == sorted(expressed)  # each merged word once
    code, _, err = run(capsys, "info", path, "--no-merge-duplicates")
    assert code == 2 and "2 gene names occur more than once" in err
    h5ad = write_h5ad(tmp_path / "dups.h5ad", X, list(adata.var_names))
    code, out, err = run(capsys, "info", h5ad)
    assert code == 0 and "repeated gene names merged: 2 (HES4 (3 columns)" in out


def test_spike_ins_and_spaces_never_break_a_sentence(capsys, tmp_path):
    """A CELLxGENE-style file: Ensembl var_names, feature_name with spaces, feature_biotype."""
    adata = real_counts()[:, :40].copy()
    rng = np.random.default_rng(1)
    spikes = sp.csr_matrix(rng.poisson(5.0, size=(adata.n_obs, 3)).astype(np.int32))
    X = sp.hstack([adata.X, spikes], format="csr")
    names = [
        *adata.var_names[:-1],
        "MY GENE",
        *(f"ERCC-0000{i} (spike-in control)" for i in (2, 3, 4)),
    ]
    var = pd.DataFrame(
        {
            "feature_name": names,
            "feature_biotype": ["gene"] * 40 + ["spike-in"] * 3,
        },
        index=[f"ENSG{i:011d}" for i in range(40)] + ["ERCC-00002", "ERCC-00003", "ERCC-00004"],
    )
    path = write_h5ad(tmp_path / "cxg.h5ad", X, var=var)
    out = tmp_path / "s.csv"
    code, _, err = run(capsys, "sentences", path, "-o", out, "--symbols", "feature_name")
    assert code == 0, err
    flat = " ".join(err.split())
    assert "3 features that are not genes are left out of sentences" in flat
    assert "feature_biotype 'spike-in'" in flat and "'MY GENE' → MY_GENE" in flat
    rows = read_csv(out)
    dense = X.toarray()
    for i, row in enumerate(rows):
        words = row["cell_sentence"].split(" ") if row["cell_sentence"] else []
        assert all(w and not any(c.isspace() for c in w) for w in words)
        assert not any(w.startswith("ERCC") or w == "(SPIKE-IN" for w in words)
        assert len(words) == int((dense[i, :40] > 0).sum())  # one word per expressed gene
    assert any("MY_GENE" in r["cell_sentence"].split(" ") for r in rows)
    code, out_text, _ = run(capsys, "info", path, "--json")
    assert json.loads(out_text)["non_genes_excluded"] == 3


def test_ercc_names_are_left_out_without_a_biotype_column(tmp_path):
    X = sp.csr_matrix(np.array([[1, 2, 3], [0, 5, 1]], dtype=np.float32))
    path = write_h5ad(tmp_path / "ercc.h5ad", X, ["CD3E", "ERCC-00130", "MS4A1"])
    with open_dataset(path) as ds:
        assert cell_sentences(ds) == ["MS4A1 CD3E", "MS4A1"]
        assert ds.info().non_genes_excluded == 1
        assert "1 ERCC spike-ins" in " ".join(ds.warnings)


def test_auto_source_follows_the_prepared_files_counts_source(tmp_path):
    counts = sp.csr_matrix(np.array([[3, 0, 1], [0, 2, 2]], dtype=np.float32))
    lognorm = counts.copy()
    lognorm.data = np.log1p(lognorm.data)
    genes = ["CD3E", "MS4A1", "LYZ"]
    raw = ad.AnnData(X=counts, var=pd.DataFrame(index=genes))
    adata = ad.AnnData(X=lognorm[:, :2], var=pd.DataFrame(index=genes[:2]))
    adata.raw = raw
    adata.uns["c2s_preprocess"] = {"counts_source": "raw"}
    path = tmp_path / "prepared.h5ad"
    adata.write_h5ad(path)
    with open_dataset(path) as ds:
        assert ds.source.name == "raw"
    adata.uns["c2s_preprocess"] = {"counts_source": "layer:missing"}
    adata.write_h5ad(path)
    with open_dataset(path) as ds:
        assert ds.source.name == "raw"  # most genes, as before


# -- provenance and outputs ---------------------------------------------------------------------
def test_folder_hash_covers_names_and_contents(capsys, tmp_path, audit_log):
    folder = write_mtx_folder(tmp_path / "mtx")
    digest = folder_sha256(folder)
    assert digest and file_sha256(folder) == digest and len(digest) == 64
    assert run(capsys, "sentences", folder, "-o", tmp_path / "s.csv")[0] == 0
    entry = json.loads(audit_log.read_text().splitlines()[-1])
    assert entry["inputs"][0]["sha256"] == digest
    (folder / "barcodes.tsv.gz").rename(folder / "barcodes.tsv.GZ")
    assert folder_sha256(folder) != digest


def test_annotated_copy_of_a_cell_ranger_input_is_a_new_h5ad(tmp_path):
    for src in (write_h5_v3(tmp_path / "in.h5"), write_mtx_folder(tmp_path / "in")):
        before = snapshot(src)
        out = tmp_path / f"{src.name}.out.h5ad"
        labels = np.array(["T"] * 700, dtype=object)
        write_annotated_copy(
            src,
            out,
            obs={"c2s_cell_type": pd.Categorical(labels)},
            obsm={"X_c2s": np.ones((700, 4), np.float32)},
            uns={"annotate": {"input": src.name}},
        )
        result = ad.read_h5ad(out)
        assert result.shape == (700, 765) and list(result.obs["c2s_cell_type"].unique()) == ["T"]
        assert result.obsm["X_c2s"].shape == (700, 4) and result.uns["c2s"]["annotate"]
        assert list(result.var["gene_symbols"]) == list(real_counts().var_names)
        assert snapshot(src) == before


def test_embed_on_a_matrix_folder_writes_a_new_h5ad(capsys, tmp_path):
    folder = write_mtx_folder(tmp_path / "mtx")
    before = snapshot(folder)
    cells = tmp_path / "cells.txt"
    cells.write_text("\n".join(real_counts().obs_names[:3]) + "\n")
    out = tmp_path / "e.h5ad"
    code, _, err = run(
        capsys, "embed", folder, "--model", MODEL, "-o", out, "--cells", cells, "--threads", "1"
    )
    assert code == 0, err
    result = ad.read_h5ad(out)
    assert result.n_obs == 700 and result.obsm["X_c2s"].shape[1] == 256
    assert np.isfinite(result.obsm["X_c2s"][:3]).all() and np.isnan(result.obsm["X_c2s"][3:]).all()
    assert result.uns["c2s"]["embed"]["input_sha256"] == folder_sha256(folder)
    assert snapshot(folder) == before


# -- the child-process check ---------------------------------------------------------------------
CHILD_IMPORTS = """
import sys
from c2s_desktop.core import inspect_child
code = inspect_child.main([sys.argv[1]])
heavy = ("PySide6", "llama_cpp", "c2s_desktop.core.engine", "c2s_desktop.gui", "anndata", "scanpy")
print(code, sorted({m.split(".")[0] for m in sys.modules if m.startswith(heavy)}))
"""


def test_the_check_child_is_minimal_and_the_bundle_entry_dispatches_it(tmp_path):
    import subprocess
    import sys

    good = write_h5_v3(tmp_path / "ok.h5")
    done = subprocess.run(
        [sys.executable, "-c", CHILD_IMPORTS, str(good)], capture_output=True, text=True
    )
    assert done.stdout.split() == ["0", "[]"], done.stderr
    entry = Path(__file__).parents[1] / "packaging" / "entry" / "c2s_desktop_gui.py"
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    for path, code in ((good, 0), (bad, 3)):
        cmd = [sys.executable, str(entry), "-m", "c2s_desktop.core.inspect_child", str(path)]
        assert subprocess.run(cmd, capture_output=True, timeout=60).returncode == code
