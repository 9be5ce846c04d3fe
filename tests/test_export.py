"""Exports: annotated copies round-trip through anndata, the input is never touched."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

from c2s_desktop.core.errors import OutputError
from c2s_desktop.core.export import (
    full_column,
    provenance,
    write_annotated_copy,
    write_table_csv,
)
from c2s_desktop.core.report import write_report

from .conftest import sha256


@pytest.mark.parametrize("name", ["pbmc_counts_small.h5ad", "legacy_anndata_0.5.h5ad"])
def test_annotated_copy_round_trips(real_h5ad, tmp_path, name):
    src = real_h5ad.parent / name
    before = sha256(src)
    n = ad.read_h5ad(src, backed="r").n_obs
    rows = np.arange(0, n, 2)
    labels = np.where(rows % 4 == 0, "T cell", "B cell")
    out = tmp_path / "out.h5ad"
    record = provenance(src, "annotate", model_name="tiny", template_id="x/0", parameters={"k": 5})
    write_annotated_copy(
        src,
        out,
        obs={
            "c2s_cell_type": full_column(n, rows, labels, None),
            "c2s_cell_type_prob": full_column(n, rows, np.full(len(rows), 0.75), None),
        },
        obsm={"X_c2s": np.ones((n, 4), np.float32)},
        uns={"annotate": record},
    )
    assert sha256(src) == before
    back = ad.read_h5ad(out)
    assert back.n_obs == n
    assert list(back.obs["c2s_cell_type"].iloc[:3].astype(object)) == ["T cell", np.nan, "B cell"]
    assert back.obs["c2s_cell_type_prob"].iloc[0] == pytest.approx(0.75)
    assert np.isnan(back.obs["c2s_cell_type_prob"].iloc[1])
    assert back.obsm["X_c2s"].shape == (n, 4)
    assert back.uns["c2s"]["annotate"]["input_sha256"] == before
    assert back.uns["c2s"]["annotate"]["template_id"] == "x/0"
    # a second export into the copy's copy keeps earlier records
    out2 = tmp_path / "out2.h5ad"
    write_annotated_copy(out, out2, uns={"embed": provenance(out, "embed")})
    assert set(ad.read_h5ad(out2).uns["c2s"]) == {"annotate", "embed"}
    html = tmp_path / "r.html"
    write_report(out, html)
    text = html.read_text()
    assert "<svg" in text and "T cell" in text and before in text


def test_existing_output_and_input_are_protected(real_h5ad, tmp_path):
    out = tmp_path / "out.h5ad"
    out.write_text("keep")
    with pytest.raises(OutputError, match="already exists"):
        write_annotated_copy(real_h5ad, out)
    assert out.read_text() == "keep"
    with pytest.raises(OutputError, match="input file"):
        write_annotated_copy(real_h5ad, real_h5ad, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["out.h5ad"]


def test_csv_table(tmp_path):
    path = write_table_csv(tmp_path / "t.csv", {"cell_id": ["a,1", "b"], "p": [0.5, np.nan]})
    assert path.read_text() == 'cell_id,p\n"a,1",0.5\nb,\n'
