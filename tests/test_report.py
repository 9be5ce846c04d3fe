"""The HTML report explains a prepared, annotated file: QC, map, markers, agreement, confidence,
methods; each section only when the file holds its data, all text escaped."""

from __future__ import annotations

import html
import re
from importlib.metadata import version

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from c2s_desktop.core.dataset import open_dataset
from c2s_desktop.core.export import full_column, provenance, write_annotated_copy
from c2s_desktop.core.model_store import cached_sha256, demo_model_path
from c2s_desktop.core.preprocess import PreprocessOptions, preprocess_file
from c2s_desktop.core.report import render_report, render_results, write_report
from c2s_desktop.core.report_sections import LOW_CONFIDENCE
from c2s_desktop.core.report_svg import MAX_POINTS, scatter_svg
from c2s_desktop.core.resources import resource_path

from .conftest import sha256, write_h5ad

DATA = resource_path("demo", "pbmc_demo.h5ad")
OPTIONS = PreprocessOptions(min_genes=200, max_pct_mt=0.5, n_top_genes=500, n_pcs=30)
ODD = "<b>x</b>"
SCANPY = version("scanpy")


def _annotate(src, out, labels, prob) -> dict:
    """An annotated copy the way `c2s annotate -o` writes it (provenance of the demo model)."""
    n = len(labels)
    record = provenance(
        src,
        "annotate",
        model_name="demo-pbmc-tiny",
        model_sha256=cached_sha256(demo_model_path()),
        template_id="cell2sentence-1.2.0/cell_type_prediction/0",
        parameters={"candidates_from": "cell_type", "mode": "representative", "n_genes": 200},
    )
    rows = np.arange(n)
    write_annotated_copy(
        src,
        out,
        obs={
            "c2s_cell_type": full_column(n, rows, labels, None),
            "c2s_cell_type_prob": full_column(n, rows, prob, None),
        },
        uns={"annotate": record},
    )
    return record


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    prepared, out = folder / "prepared.h5ad", folder / "annotated.h5ad"
    preprocess_file(DATA, prepared, OPTIONS, labels=("cell_type",))
    obs = ad.read_h5ad(prepared, backed="r").obs
    rng = np.random.default_rng(1)
    labels = obs["cell_type"].astype(str).to_numpy().copy()
    flip = rng.random(len(labels)) < 0.2
    labels[flip] = "CD19+ B"
    labels[:3] = ODD  # a label that must be escaped
    prob = rng.uniform(0.2, 1.0, len(labels)).astype(np.float32)
    prob[5] = np.nan  # NaN-safe
    _annotate(prepared, out, labels, prob)
    html_path = folder / "r.html"
    before = sha256(out)
    write_report(out, html_path)
    assert sha256(out) == before
    return out, html_path.read_text("utf-8")


def _section(text: str, key: str) -> str:
    match = re.search(rf'<section id="{key}">(.*?)</section>', text, re.S)
    assert match, f"section {key} missing"
    return match.group(1)


def test_qc_section_shows_the_recorded_thresholds_and_counts(annotated):
    out, text = annotated
    prep = ad.read_h5ad(out, backed="r").uns["c2s_preprocess"]
    qc = _section(text, "qc")
    assert f"<td>{prep['n_cells_in']:,}</td>" in qc and f"<td>{prep['n_cells_kept']:,}</td>" in qc
    removed = prep["cells_removed"]["min_genes"]
    assert removed > 0 and f"<th>cells removed by min_genes</th><td>{removed:,}</td>" in qc
    assert "<td>MT-</td>" in qc
    options = prep["options"]
    assert options["min_genes"] == OPTIONS.min_genes
    assert f"<th>min_genes</th><td>{options['min_genes']}</td>" in qc
    assert f"<th>max_pct_mt</th><td>{options['max_pct_mt']:g}</td>" in qc
    assert "<th>max_genes</th><td>none</td>" in qc
    assert qc.count("<svg") == 3 and qc.count('stroke-dasharray="4 2"') == 2  # min_genes, max mt
    assert "damaged" in qc.split("</p>")[0]  # the plain sentence comes first


def test_map_is_coloured_by_cluster_and_prediction(annotated):
    out, text = annotated
    a = ad.read_h5ad(out, backed="r")
    section = _section(text, "map")
    assert "obsm['X_umap']" in section
    legends = re.findall(r"<ul class=legend>(.*?)</ul>", section)
    assert len(legends) == 2
    assert legends[0].count("<li>") == a.obs["leiden"].nunique()
    assert legends[1].count("<li>") == a.obs["c2s_cell_type"].nunique()
    assert "<circle" not in section  # one path per category, not one node per cell


def test_agreement_matrix_counts_every_labelled_cell(annotated):
    out, text = annotated
    obs = ad.read_h5ad(out, backed="r").obs
    section = _section(text, "agreement")
    table = re.search(r"<table class=matrix>(.*?)</table>", section, re.S).group(1)
    total = 0
    for row in re.findall(r"<tr><th>[^<]+</th>(.*?)</tr>", table):
        values = [int(v.replace(",", "")) for v in re.findall(r">([\d,]+)</td>", row)]
        assert sum(values[:-1]) == values[-1]
        total += values[-1]
    assert total == obs["c2s_cell_type"].notna().sum() == len(obs)
    accuracy = (obs["c2s_cell_type"].astype(str) == obs["cell_type"].astype(str)).mean()
    assert f"Overall accuracy: {accuracy:.1%}" in section
    ari = ad.read_h5ad(out, backed="r").uns["c2s_preprocess"]["ari"]["cell_type"]
    assert f"Leiden clusters vs cell_type: {ari:.3f}" in section


def test_low_confidence_count_matches_obs(annotated):
    out, text = annotated
    obs = ad.read_h5ad(out, backed="r").obs
    prob = obs["c2s_cell_type_prob"].astype(float)
    n_low = int((prob < LOW_CONFIDENCE).sum())
    section = _section(text, "confidence")
    assert f"{n_low:,} of {prob.notna().sum():,} labelled cells" in section
    assert f"below {LOW_CONFIDENCE}" in section
    lowest = prob.idxmin()
    first = re.search(r"<tr><td>(.*?)</td><td>(.*?)</td><td class=num>(.*?)</td>", section)
    assert html.unescape(first.group(1)) == lowest
    assert float(first.group(3)) == pytest.approx(prob.min(), abs=1e-3)


def test_labels_are_escaped(annotated):
    _, text = annotated
    assert ODD not in text and html.escape(ODD) in text


def test_methods_name_the_demo_model_and_the_preprocessing(annotated):
    _, text = annotated
    section = _section(text, "methods")
    assert "demo-pbmc-tiny" in section and "labels are illustrative" in section
    assert cached_sha256(demo_model_path())[:12] in section and "Q8_0" in section
    assert "label log-likelihood" in section and "obs['cell_type']" in section
    assert f"scanpy {SCANPY}" in section and "Leiden" in section
    assert f"at least {OPTIONS.min_genes} genes" in section


def test_report_is_self_contained(annotated):
    _, text = annotated
    assert "<script" not in text and "http://" not in text and "https://" not in text


def test_file_without_preprocessing_or_labels_renders(tmp_path):
    src = write_h5ad(tmp_path / "in.h5ad", np.ones((30, 5), np.float32))
    out = tmp_path / "e.h5ad"
    xy = np.random.default_rng(0).normal(size=(30, 2)).astype(np.float32)
    write_annotated_copy(src, out, obsm={"X_c2s_2d": xy}, uns={"embed": provenance(src, "embed")})
    text = render_report(out)
    assert "<svg" in text
    obs = pd.DataFrame(
        {"c2s_cell_type": ["a", "b", None], "c2s_cell_type_prob": [0.4, np.nan, 0.1]},
        index=["same", "same", "other"],  # cell ids need not be unique; NaN is not low
    )
    low = _section(render_results("x.h5ad", obs, {}, {}), "confidence")
    assert "1 of 1 labelled cells" in low and low.count("<tr><td>") == 1
    for key in ("qc", "markers", "agreement", "confidence"):
        assert f'<section id="{key}">' not in text


def test_scatter_of_many_cells_is_downsampled():
    n = 100_000
    xy = np.random.default_rng(0).normal(size=(n, 2))
    labels = pd.Series(np.where(np.arange(n) % 3 == 0, "a", "b"))
    svg = scatter_svg(xy, labels)
    assert svg.count('h.1"') + svg.count("h.1M") == MAX_POINTS and svg.count("<path") == 2
    assert f"{MAX_POINTS:,} of {n:,} cells drawn" in svg
    assert len(svg) < 20 * MAX_POINTS


def test_dot_plots_show_the_top_markers_of_each_group(annotated):
    out, text = annotated
    a = ad.read_h5ad(out, backed="r")
    section = _section(text, "markers")
    titles = re.findall(r"<h3>(.*?)</h3>", section)
    assert titles == ["Markers per cluster (Leiden)", "Markers per predicted cell type"]
    names = a.uns["rank_genes_groups"]["names"]
    expected = []
    for group in names.dtype.names:
        expected += [g for g in names[group][:3] if g not in expected]
    cluster_plot = section.split("<h3>")[1]
    shown = re.search(
        r"rank_genes_groups stored in the file \(Wilcoxon\): (.*?)\.</p>", cluster_plot
    )
    assert shown.group(1).split(", ") == expected
    rows = cluster_plot.count('text-anchor="end"')
    assert rows == a.obs["leiden"].nunique()
    # a dot per (group, gene) with cells expressing it; its tooltip names the fraction
    assert cluster_plot.count("<circle") >= len(expected) + 3  # + the size legend
    predicted = section.split("<h3>")[2]
    assert "ranked for this report" in predicted and html.escape(ODD) in predicted


def test_results_in_memory_with_the_open_dataset_show_its_sections(annotated):
    """The window's export: results held in memory plus the open (prepared) dataset."""
    out, _ = annotated
    prepared = out.with_name("prepared.h5ad")
    with open_dataset(prepared) as ds:
        n = ds.n_cells
        frame = pd.DataFrame(
            {"c2s_cell_type": ds.obs["cell_type"].astype(str).to_numpy()},
            index=ds.obs.index,
        )
        text = render_results(
            prepared.name, frame, {"X_umap": ds.embedding("X_umap")}, {}, dataset=ds
        )
    assert f"<td>{n:,}</td>" in _section(text, "qc")
    assert "Markers per cluster (Leiden)" in _section(text, "markers")
    assert "Overall accuracy: 100.0%" in _section(text, "agreement")
    assert '<section id="confidence">' not in text  # no probabilities in these results


def test_prepared_file_without_annotation_renders_its_analysis(annotated):
    text = render_report(annotated[0].with_name("prepared.h5ad"))
    assert '<section id="qc">' in text and '<section id="methods">' in text
    assert _section(text, "markers").count("<h3>") == 1  # clusters only
    assert '<section id="agreement">' not in text and '<section id="confidence">' not in text
