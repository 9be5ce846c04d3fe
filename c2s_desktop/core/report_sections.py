"""Sections of the HTML report, each from plain inputs; each opens with one plain sentence.

A section builder returns ``""`` when the file holds nothing for it, so the report shows only
what the data supports. Every string from the file (cell ids, labels, names) is escaped.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import numpy as np
import pandas as pd

from .catalog import MODEL_TASKS
from .preprocess import CLUSTER_KEY, PreprocessOptions, adjusted_rand, label_columns
from .report_svg import histogram_svg, scatter_svg
from .results import CELL_TYPE as CELL_TYPE  # re-exported for the report modules
from .results import CELL_TYPE_PROB as CELL_PROB
from .results import EMBEDDING, LAYOUT

RUNNER_UP_COLUMNS = ("c2s_cell_type_runner_up", "c2s_cell_type_second")
CLUSTER = CLUSTER_KEY
LOW_CONFIDENCE = 0.5
N_LOWEST = 25
MAX_MATRIX = 25
EMBEDDING_ORDER = ("X_umap", LAYOUT, "X_tsne", "X_pca", EMBEDDING)
DEMO_NOTE = (
    "a 4 MB demo model trained on 700 PBMCs: labels are illustrative. It is a 4-layer GPT-NeoX "
    "trained in this project on 80 % of the bundled demo cells (blood cells of one donor) for "
    "cell-type prediction and generation; it knows nothing beyond those cells."
)
QUANTS = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "F16", "BF16", "F32")


def esc(value: Any) -> str:
    """Escaped text of any value (NaN and None shown as n/a)."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return html.escape(str(value))


def section(key: str, title: str, lead: str, body: str) -> str:
    """One report section: a heading, the plain-language sentence, then the details."""
    return (
        f'<section id="{key}"><h2>{html.escape(title)}</h2>'
        f"<p class=lead>{html.escape(lead)}</p>{body}</section>"
    )


def as_mapping(value: Any) -> dict[str, Any]:
    """A dict from a stored dict or JSON string; ``{}`` otherwise."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str | bytes):
        try:
            loaded = json.loads(value)
        except ValueError:
            return {}
        return loaded if isinstance(loaded, dict) else {}
    return {}


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist() if value.ndim else value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _fmt(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return "none"
    if isinstance(value, float):
        return esc(f"{value:,.4g}") if np.isfinite(value) else "n/a"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, Mapping):
        return ", ".join(f"{esc(k)}: {_fmt(v)}" for k, v in value.items()) or "none"
    return esc(value)


def _table(rows: list[tuple[str, Any]], cls: str = "kv") -> str:
    body = "".join(f"<tr><th>{esc(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in rows)
    return f"<table class={cls}>{body}</table>"


# -- 1. QC ----------------------------------------------------------------------------------------
_QC_FACTS = (
    ("n_cells_in", "cells in the input"),
    ("n_cells_kept", "cells kept"),
    ("n_genes_in", "genes in the input"),
    ("n_genes_kept", "genes kept (in enough cells)"),
    ("mito_prefix", "mitochondrial gene prefix"),
    ("n_mito_genes", "mitochondrial genes found"),
    ("input_counts_source", "counts taken from"),
    ("n_clusters", "Leiden clusters"),
    ("input", "input file"),
)


def recorded_options(prep: Mapping[str, Any]) -> dict[str, Any]:
    """Every preprocessing option: the recorded value, ``None`` where none was set."""
    options = as_mapping(prep.get("options"))
    return {f.name: _plain(options.get(f.name)) for f in fields(PreprocessOptions)}


def qc_section(prep: Mapping[str, Any], obs: pd.DataFrame) -> str:
    """Cells and genes kept, what each filter removed, the options and QC histograms."""
    qc_cols = [c for c in ("n_genes_by_counts", "total_counts", "pct_counts_mt") if c in obs]
    if not prep and not qc_cols:
        return ""
    options = recorded_options(prep) if prep else {}
    facts = [(label, prep[key]) for key, label in _QC_FACTS if key in prep]
    for key, what in (("cells_removed", "cells removed by"), ("genes_removed", "genes removed by")):
        facts += [(f"{what} {k}", v) for k, v in as_mapping(prep.get(key)).items()]
    body = _table(facts) if facts else ""
    notes = prep.get("notes")
    if notes is not None and len(notes):
        body += "".join(f"<p class=warn>{esc(n)}</p>" for n in np.atleast_1d(notes))
    if options:
        body += "<h3>Thresholds and parameters</h3>" + _table(list(options.items()))
    figures = []
    if "n_genes_by_counts" in obs:
        marks = [(options.get("min_genes"), "min_genes"), (options.get("max_genes"), "max_genes")]
        figures.append(
            histogram_svg(obs["n_genes_by_counts"].to_numpy(float), "Genes per cell", marks)
        )
    if "total_counts" in obs:
        figures.append(histogram_svg(obs["total_counts"].to_numpy(float), "Counts per cell"))
    if "pct_counts_mt" in obs:
        marks = [(options.get("max_pct_mt"), "max_pct_mt")]
        figures.append(
            histogram_svg(obs["pct_counts_mt"].to_numpy(float), "% mitochondrial counts", marks)
        )
    if figures:
        body += (
            f"<h3>The {len(obs):,} cells in this file</h3><div class=row>{''.join(figures)}</div>"
            "<p class=meta>Dashed lines: the thresholds used (cells outside them were removed "
            "before this file was written).</p>"
        )
    lead = (
        "Before the analysis, damaged or empty cells (too few genes detected, or mostly "
        "mitochondrial reads) and genes seen in almost no cells were set aside."
    )
    return section("qc", "Quality control", lead, body)


# -- 2. the map -----------------------------------------------------------------------------------
def pick_embedding(obsm: Mapping[str, np.ndarray]) -> str | None:
    """The 2-D map to draw: UMAP first, then the other known embeddings, then any."""
    for key in (*EMBEDDING_ORDER, *obsm):
        if key in obsm and obsm[key].ndim == 2 and obsm[key].shape[1] >= 2:
            return key
    return None


def map_section(obs: pd.DataFrame, obsm: Mapping[str, np.ndarray]) -> str:
    """The cells on their map, coloured by cluster and by predicted type."""
    key = pick_embedding(obsm)
    if key is None:
        return ""
    xy = obsm[key]
    figures = []
    if CLUSTER in obs:
        figures.append(scatter_svg(xy, obs[CLUSTER], title="Clusters (Leiden)"))
    if CELL_TYPE in obs:
        figures.append(scatter_svg(xy, obs[CELL_TYPE], title="Predicted cell type"))
    if not figures:
        figures.append(scatter_svg(xy, None))
    lead = (
        "Each dot is a cell; cells with similar gene activity lie close together, so groups "
        "of dots are groups of similar cells."
    )
    body = (
        f"<p class=meta>Coordinates: obsm['{esc(key)}'].</p><div class=row>{''.join(figures)}</div>"
    )
    return section("map", f"Cells ({key})", lead, body)


# -- 4. agreement ---------------------------------------------------------------------------------
def label_column(obs: pd.DataFrame, records: Mapping[str, Any]) -> str | None:
    """The file's own labels: the annotation's ``candidates_from`` column, else one named so."""
    params = as_mapping(as_mapping(records.get("annotate")).get("parameters"))
    chosen = params.get("candidates_from")
    if isinstance(chosen, str) and chosen in obs and not chosen.startswith("c2s_"):
        return chosen
    found = [c for c in label_columns(obs) if not c.startswith("c2s_")]
    return next((c for c in found if 1 < obs[c].nunique(dropna=True) <= 500), None)


def _top(values: pd.Series, limit: int) -> pd.Series:
    keep = values.value_counts().index[:limit]
    return values.where(values.isin(keep), "(other)")


def agreement_section(
    obs: pd.DataFrame, known: str | None, ari: Mapping[str, Any] | None = None
) -> str:
    """Confusion matrix of predicted vs known labels, per-label agreement, accuracy and ARI."""
    if CELL_TYPE not in obs or known is None:
        return ""
    both = obs[[known, CELL_TYPE]].dropna()
    truth, pred = both[known].astype(str), both[CELL_TYPE].astype(str)
    if len(both) == 0:
        return ""
    match = truth.to_numpy() == pred.to_numpy()
    shared = set(truth) & set(pred)
    table = pd.crosstab(_top(truth, MAX_MATRIX), _top(pred, MAX_MATRIX))
    peak = max(1, int(table.to_numpy().max()))
    head = "".join(f"<th class=rot><span>{esc(c)}</span></th>" for c in table.columns)
    rows = []
    for label, counts in table.iterrows():
        n = int(counts.sum())
        agree = int(match[truth.to_numpy() == label].sum()) if label != "(other)" else 0
        cells = "".join(
            f'<td class=num style="background:rgba(31,119,180,{0.85 * v / peak:.2f})'
            f'{";font-weight:bold" if c == label else ""}">{v:,}</td>'
            for c, v in counts.items()
        )
        share = f"{agree / n:.0%}" if n and label in shared else "n/a"
        rows.append(
            f"<tr><th>{esc(label)}</th>{cells}<td class=num>{n:,}</td><td>{share}</td></tr>"
        )
    body = (
        f"<p>Rows: obs['{esc(known)}'] (the file's labels); columns: the predicted type. "
        f"{len(both):,} cells have both.</p><div class=scroll><table class=matrix><tr><th></th>"
        f"{head}<th>cells</th><th>agreement</th></tr>{''.join(rows)}</table></div>"
    )
    if shared:
        body += (
            f"<p><b>Overall accuracy: {match.mean():.1%}</b> ({int(match.sum()):,} of "
            f"{len(both):,} cells predicted with exactly the file's label).</p>"
        )
    else:
        body += "<p>The predicted names and the file's labels share no name: no accuracy.</p>"
    body += _ari_html(truth, pred, known, ari or {})
    lead = (
        "How often the model's predicted type matches the label the file already had for the "
        "same cell (a diagonal table means full agreement)."
    )
    return section("agreement", "Agreement with the file's labels", lead, body)


def _ari_html(truth: pd.Series, pred: pd.Series, known: str, ari: Mapping[str, Any]) -> str:
    items = [
        f"<li>Predicted type vs {esc(known)}: {adjusted_rand(truth, pred):.3f}</li>",
        *(
            f"<li>Leiden clusters vs {esc(col)}: {float(_plain(v)):.3f} (recorded by "
            "preprocessing)</li>"
            for col, v in ari.items()
            if isinstance(_plain(v), int | float)
        ),
    ]
    return (
        "<p>Adjusted Rand index (1 = the same grouping, 0 = no better than chance):</p>"
        f"<ul>{''.join(items)}</ul>"
    )


# -- 5. low confidence ----------------------------------------------------------------------------
def low_confidence_section(
    obs: pd.DataFrame, known: str | None, threshold: float = LOW_CONFIDENCE
) -> str:
    """How many cells fall below ``threshold`` and the least certain ones."""
    if CELL_TYPE not in obs or CELL_PROB not in obs:
        return ""
    prob = pd.to_numeric(obs[CELL_PROB], errors="coerce").astype(float)
    values = prob.to_numpy()
    finite = np.isfinite(values) & obs[CELL_TYPE].notna().to_numpy()
    scored = values[finite]
    if len(scored) == 0:
        return ""
    n_low = int((scored < threshold).sum())
    lowest = np.argsort(np.where(finite, values, np.inf), kind="stable")[
        : min(N_LOWEST, len(scored))
    ]
    runner = next((c for c in RUNNER_UP_COLUMNS if c in obs), None)
    head = "<tr><th>cell</th><th>predicted</th><th>probability</th>"
    head += ("<th>runner-up</th>" if runner else "") + (f"<th>{esc(known)}</th>" if known else "")
    rows = []
    for pos in lowest:  # by position: cell ids need not be unique
        r = obs.iloc[pos]
        row = f"<td>{esc(obs.index[pos])}</td><td>{esc(r[CELL_TYPE])}</td>"
        row += f"<td class=num>{float(r[CELL_PROB]):.3f}</td>"
        row += f"<td>{esc(r[runner])}</td>" if runner else ""
        row += f"<td>{esc(r[known])}</td>" if known else ""
        rows.append(f"<tr>{row}</tr>")
    body = (
        f"<p><b>{n_low:,} of {len(scored):,} labelled cells ({n_low / len(scored):.1%}) have a "
        f"probability below {threshold}</b> (median probability "
        f"{float(np.median(scored)):.2f}). The {len(lowest)} least certain:</p>"
        f"<table class=cells>{head}</tr>{''.join(rows)}</table>"
    )
    lead = (
        "The model gives each label a probability; cells where it was unsure deserve a second "
        "look before their label is trusted."
    )
    return section("confidence", "Low-confidence cells", lead, body)


# -- 6. methods -----------------------------------------------------------------------------------
def catalog_entry(model: str) -> tuple[str, frozenset[str]] | None:
    """The catalogue's hub repo and tasks for a model name (repo id or its last part)."""
    name = model.strip().lower()
    for repo, (tasks, _) in MODEL_TASKS.items():
        if name and name in (repo.lower(), repo.lower().split("/")[-1]):
            return repo, tasks
    return None


def quantization(record: Mapping[str, Any]) -> str:
    """The quantization recorded, or the one the model's name spells (``…q8_0…``)."""
    if record.get("quantization"):
        return str(record["quantization"])
    text = f"{record.get('model_file', '')} {record.get('model', '')}".upper()
    return next((q for q in QUANTS if q in text), "")


def methods_section(
    records: Mapping[str, Any], prep: Mapping[str, Any], demo: tuple[str, str] = ("", "")
) -> str:
    """How the labels and the map were made: model, scoring, preprocessing."""
    parts = []
    annotate = as_mapping(records.get("annotate"))
    if annotate:
        parts.append(_model_paragraph(annotate, demo))
        parts.append(_scoring_paragraph(annotate))
    if prep:
        parts.append(_preprocess_paragraph(prep))
    if not parts:
        return ""
    lead = "What was done to the data, and with which tools, so the result can be repeated."
    return section("methods", "Methods", lead, "".join(parts))


def _model_paragraph(record: Mapping[str, Any], demo: tuple[str, str]) -> str:
    """``demo``: the bundled demo model's sha256 and file name."""
    model = str(record.get("model") or "an unnamed model")
    sha = str(record.get("model_sha256") or "")
    is_demo = bool(sha and sha == demo[0]) or model.lower().endswith("demo-pbmc-tiny")
    if is_demo and not record.get("model_file"):
        record = {**record, "model_file": demo[1]}
    quant = quantization(record)
    text = f"Labels were predicted by the model <b>{esc(model)}</b>"
    if record.get("model_file"):
        text += f" (file {esc(record['model_file'])})"
    text += f", sha256 {esc(sha[:12])}…" if sha else ", file hash not recorded (a server)"
    text += f", quantization {esc(quant)}" if quant else ""
    entry = catalog_entry(model)
    if is_demo:
        text += f". This is {esc(DEMO_NOTE)}"
    elif entry:
        repo, tasks = entry
        text += (
            f". It is the released model {esc(repo)}, trained for: "
            f"{esc(', '.join(sorted(tasks)))}; its labels come from the cell types of its "
            "training data, and cells unlike those may get the nearest known label."
        )
    else:
        text += (
            ". It is not in the catalogue of released C2S models: what it was trained on is "
            "not known here."
        )
    return f"<p>{text}.</p>" if not text.endswith(".") else f"<p>{text}</p>"


def _scoring_paragraph(record: Mapping[str, Any]) -> str:
    params = as_mapping(record.get("parameters"))
    mode = params.get("mode_used") or params.get("mode", "auto")
    if params.get("candidates"):
        cands = f"the {len(params['candidates'])} labels given"
    elif params.get("candidates_from"):
        cands = f"the values of obs['{esc(params['candidates_from'])}']"
    else:
        cands = "labels the model proposed itself on a sample of cells"
    how = (
        "each representative cell (the cells nearest the centre of each cluster) was scored "
        "and its probabilities spread to its neighbours"
        if mode == "representative"
        else "every cell was scored"
        if mode == "per-cell"
        else f"mode {esc(mode)}"
    )
    genes = params.get("n_genes")
    scoring = params.get("scoring")
    clusters = params.get("clusters")
    extra = f" Clusters: {esc(clusters)}." if clusters and mode == "representative" else ""
    if scoring:
        extra += f" Scoring: {esc(scoring)}."
    return (
        "<p>Each cell was written as a cell sentence (its genes from most to least expressed"
        f"{f', top {esc(genes)}' if genes else ''}); the model then scored how likely each "
        f"candidate label is as the continuation of the prompt (label log-likelihood, softmax "
        f"over candidates). Candidates: {cands}. Mode: {how}.{extra} Template: "
        f"{esc(record.get('template_id') or 'n/a')}; {esc(record.get('app', ''))}, "
        f"{esc(record.get('time', ''))}.</p>"
    )


def _preprocess_paragraph(prep: Mapping[str, Any]) -> str:
    options = recorded_options(prep)
    versions = as_mapping(prep.get("versions"))

    def opt(*keys: str) -> str:
        key = next((k for k in keys if k in prep or options.get(k) is not None), keys[-1])
        value = prep.get(key) if key in prep else options.get(key)
        return "none" if value is None else esc(_plain(value))

    return (
        f"<p>Preprocessing used scanpy {esc(versions.get('scanpy') or prep.get('scanpy'))}"
        f" (anndata {esc(versions.get('anndata'))}): QC metrics (calculate_qc_metrics), cells "
        f"kept with at least {opt('min_genes')} genes (at most {opt('max_genes')}; "
        f"mitochondrial share at most {opt('max_pct_mt')} %), genes kept when seen in at least "
        f"{opt('min_cells')} cells; counts normalised per cell (normalize_total) and "
        f"log1p-transformed; {opt('n_top_genes')} highly variable genes (flavor "
        f"{opt('hvg_flavor')}); PCA ({opt('n_pcs_used', 'n_pcs')} components); neighbour "
        f"graph (k = {opt('n_neighbors_used', 'n_neighbors')}); UMAP; Leiden clustering "
        f"(resolution {opt('resolution')});"
        f" marker genes per cluster by Wilcoxon rank-sum test (Benjamini–Hochberg). Random "
        f"seed {opt('seed')}. {esc(prep.get('app', ''))}, {esc(prep.get('time', 'n/a'))}.</p>"
    )
