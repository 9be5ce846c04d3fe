"""A self-contained HTML report of the C2S results stored in an ``.h5ad`` (figures inline SVG)."""

from __future__ import annotations

import functools
import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from .. import __version__
from .anndata_io import read_elem
from .atomic import atomic_write
from .dataset import Dataset, open_dataset
from .errors import C2SError, DataError, InputFileError
from .model_store import cached_sha256, demo_model_path
from .progress import CancelToken, ProgressFn, no_progress
from .report_markers import DotPlot, dot_plots, markers_section
from .report_sections import (
    CELL_TYPE,
    CLUSTER,
    LOW_CONFIDENCE,
    agreement_section,
    as_mapping,
    label_column,
    low_confidence_section,
    map_section,
    methods_section,
    qc_section,
    section,
)
from .report_svg import MAX_POINTS
from .results import EMBEDDING, UNS_KEY

PREPROCESS_UNS = "c2s_preprocess"
__all__ = ["LOW_CONFIDENCE", "MAX_POINTS", "render_report", "render_results", "write_report"]

_EMPTY_HINT = "run c2s annotate/embed/summarize or c2s preprocess with -o first"
_STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222;line-height:1.4}"
    ".fig{display:flex;gap:1em}.row{display:flex;flex-wrap:wrap;gap:1.5em}"
    ".legend{list-style:none;font-size:12px;padding:0}"
    ".legend span{display:inline-block;width:10px;height:10px;margin-right:4px}"
    ".bar{background:#1f77b4;height:10px}td,th{padding:2px 8px;text-align:left;"
    "vertical-align:top}.prov td{white-space:pre-wrap;font-family:monospace}"
    ".turn{border-left:3px solid #1f77b4;padding:0 1em;margin:1em 0}"
    ".warn{color:#a04000}.meta{color:#666;font-size:12px}pre{white-space:pre-wrap}"
    ".lead{font-size:1.05em;background:#f4f6fa;padding:.5em .8em;border-radius:4px}"
    ".num{text-align:right;font-variant-numeric:tabular-nums}.scroll{overflow-x:auto}"
    ".matrix td,.matrix th{border:1px solid #ddd;font-size:12px}"
    ".rot{height:9em;vertical-align:bottom;white-space:nowrap}"
    ".rot span{display:inline-block;transform:rotate(-60deg);transform-origin:left bottom;"
    "width:1.5em}.kv th{font-weight:normal;color:#444}section{margin-bottom:2em}"
)


@dataclass(frozen=True)
class ReportInputs:
    """What a report is made from: obs, 2-D obsm, ``uns['c2s']``, ``uns['c2s_preprocess']`` and
    scanpy's ``uns['rank_genes_groups']`` (empty when absent)."""

    obs: pd.DataFrame
    obsm: dict[str, np.ndarray]
    records: dict[str, Any]
    preprocess: dict[str, Any]
    rank_genes: dict[str, Any]


def load_inputs(path: str | Path) -> ReportInputs:
    """Read the parts of an ``.h5ad`` a report uses (no expression matrix)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError("file not found", path=path, hint="give an .h5ad written by c2s")
    try:
        with h5py.File(path, "r") as f:
            obs = read_elem(f["obs"])
            obsm = {
                k: np.asarray(v[()])
                for k, v in f.get("obsm", {}).items()
                if isinstance(v, h5py.Dataset) and v.ndim == 2
            }
            parts = {
                key: read_elem(f[f"uns/{key}"]) if f"uns/{key}" in f else {}
                for key in (UNS_KEY, PREPROCESS_UNS, "rank_genes_groups")
            }
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input problem
        raise InputFileError(
            f"cannot read results ({exc.__class__.__name__}: {exc})",
            path=path,
            hint="give an .h5ad written by a c2s command",
        ) from exc
    if not isinstance(obs, pd.DataFrame):
        raise InputFileError(
            "obs is not a table", path=path, hint="give an .h5ad written by a c2s command"
        )
    mappings = {k: dict(v) if isinstance(v, Mapping) else {} for k, v in parts.items()}
    return ReportInputs(
        obs, obsm, mappings[UNS_KEY], mappings[PREPROCESS_UNS], mappings["rank_genes_groups"]
    )


def _bars(counts: pd.Series) -> str:
    top = max(1, int(counts.max()))
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td class=num>{v:,}</td><td><div class=bar "
        f'style="width:{300 * v / top:.0f}px"></div></td></tr>'
        for k, v in counts.items()
    )
    return f"<table><tr><th>label</th><th>cells</th><th></th></tr>{rows}</table>"


def render_report(
    path: str | Path, progress: ProgressFn = no_progress, cancel: CancelToken | None = None
) -> str:
    """The report HTML for the results in ``path`` (C2S results and/or a prepared file)."""
    p = Path(path)
    inputs = load_inputs(p)
    obs, obsm = inputs.obs, inputs.obsm
    result_cols = [c for c in obs.columns if str(c).startswith("c2s_")]
    has_map = any(k.startswith(EMBEDDING) for k in obsm)
    if not result_cols and not inputs.records and not has_map and not inputs.preprocess:
        raise DataError("no C2S results in this file", path=p, hint=_EMPTY_HINT)
    plots: list[DotPlot] = []
    notes: list[str] = []
    if CLUSTER in obs or CELL_TYPE in obs:
        try:
            with open_dataset(p) as ds:
                plots = dot_plots(ds, inputs.rank_genes, progress, cancel)
        except C2SError as exc:  # the rest of the report does not need the matrix
            notes.append(f"Marker dot plots left out: {exc}")
    return render_results(
        p.name, obs, obsm, inputs.records, preprocess=inputs.preprocess, plots=plots, notes=notes
    )


def render_results(
    name: str,
    obs: pd.DataFrame,
    obsm: Mapping[str, np.ndarray],
    uns: Mapping[str, Any],
    *,
    preprocess: Mapping[str, Any] | None = None,
    plots: list[DotPlot] | None = None,
    dataset: Dataset | None = None,
    notes: list[str] | None = None,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> str:
    """The report HTML for results held in memory: ``obs`` (``c2s_*`` results and any labels),
    2-D ``obsm`` embeddings, ``uns['c2s']`` records (provenance; a record with a
    ``conversations`` JSON list is shown as the assistant's answers, one with ``sentences`` as
    generated cells) and ``uns['c2s_preprocess']``. With an open ``dataset`` (the file the
    results belong to), its obs columns, preprocessing record and marker dot plots join in."""
    notes = list(notes or [])
    prep = dict(preprocess or {})
    if dataset is not None:
        obs, prep, plots = _with_dataset(dataset, obs, prep, plots, notes, progress, cancel)
    known = label_column(obs, uns)
    ari = as_mapping(prep.get("ari"))
    parts = [_summary(name, obs, uns, prep)]
    parts.append(qc_section(prep, obs))
    parts.append(map_section(obs, obsm))
    parts.append(markers_section(plots or []))
    parts.append(agreement_section(obs, known, ari))
    parts.append(low_confidence_section(obs, known))
    labels = obs.get(CELL_TYPE)
    if labels is not None and labels.notna().any():
        counts = labels.dropna().astype(str).value_counts()
        parts.append(
            section(
                "labels",
                "Predicted cell types",
                "How many cells received each predicted type.",
                _bars(counts),
            )
        )
    parts.extend(f"<p class=warn>{html.escape(n)}</p>" for n in notes)
    records = []
    for key, record in uns.items():
        record = dict(record) if isinstance(record, Mapping) else {"value": record}
        if "conversations" in record:
            parts.append(_conversations_html(str(record.pop("conversations"))))
        if "sentences" in record:
            parts.append(_generated_html(str(record.pop("sentences"))))
        rows = "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{_cell(v)}</td></tr>" for k, v in record.items()
        )
        records.append(
            f"<h2>Provenance: {html.escape(str(key))}</h2><table class=prov>{rows}</table>"
        )
    parts.append(methods_section(uns, prep, _demo() if "annotate" in uns else ("", "")))
    parts.extend(records)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>C2S report</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(parts)}"
        f"<footer><p>Made offline by c2s-desktop {__version__}.</p></footer></body></html>"
    )


def _summary(name: str, obs: pd.DataFrame, uns: Mapping[str, Any], prep: Mapping) -> str:
    done = []
    if prep:
        done.append("quality control, clustering and a map (scanpy)")
    if CELL_TYPE in obs:
        done.append(f"predicted cell types for {int(obs[CELL_TYPE].notna().sum()):,} cells")
    done += [str(k) for k in uns if k != "annotate"]
    what = f" Results: {html.escape('; '.join(done))}." if done else ""
    return f"<h1>C2S Desktop report</h1><p>{html.escape(name)} — {len(obs):,} cells.{what}</p>"


def _with_dataset(
    dataset: Dataset,
    obs: pd.DataFrame,
    prep: dict[str, Any],
    plots: list[DotPlot] | None,
    notes: list[str],
    progress: ProgressFn,
    cancel: CancelToken | None,
) -> tuple[pd.DataFrame, dict[str, Any], list[DotPlot] | None]:
    """obs joined with the dataset's own columns; its preprocessing record and dot plots."""
    merged = obs
    if len(obs) == dataset.n_cells:
        merged = dataset.obs.copy()
        for col in obs.columns:
            merged[col] = obs[col].to_numpy()
    stored = load_inputs(dataset.path) if Path(dataset.path).is_file() else None
    if stored is not None and not prep:
        prep = stored.preprocess
    if plots is None and CLUSTER in dataset.obs:
        try:
            plots = dot_plots(dataset, stored.rank_genes if stored else None, progress, cancel)
        except C2SError as exc:
            notes.append(f"Marker dot plots left out: {exc}")
    return merged, prep, plots


@functools.cache
def _demo() -> tuple[str, str]:
    """The bundled demo model's sha256 and file name (to recognise it in provenance)."""
    path = demo_model_path()
    try:
        return cached_sha256(path), path.name
    except (OSError, C2SError):
        return "", path.name


def _json_list(text: str) -> list[Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def _conversations_html(text: str) -> str:
    """Summaries and answers, with their warnings, marker genes, model and prompt."""
    out = ["<h2>Assistant: summaries and answers</h2>"]
    for conv in _json_list(text):
        if not isinstance(conv, dict):
            continue
        title = html.escape(str(conv.get("title", "")))
        out.append(f"<h3>{title} ({int(conv.get('n_cells', 0)):,} cells)</h3>")
        for turn in conv.get("turns", []):
            if not isinstance(turn, dict):
                continue
            esc = {k: html.escape(str(v)) for k, v in turn.items() if not isinstance(v, list)}
            head = "Summary" if turn.get("kind") == "summary" else f"Q: {esc.get('question', '')}"
            status = turn.get("status", "done")
            note = "" if status == "done" else f" <em>({html.escape(str(status))})</em>"
            warnings = "".join(
                f"<p class=warn>Warning: {html.escape(str(w))}</p>"
                for w in turn.get("warnings", [])
            )
            markers = ", ".join(html.escape(str(m)) for m in turn.get("markers", []))
            out.append(
                f"<div class=turn><p><b>{head}</b>{note}</p><p>{esc.get('answer', '')}</p>"
                f"{warnings}"
                + (f"<p class=meta>Top genes: {markers}</p>" if markers else "")
                + f"<p class=meta>model {esc.get('model', '')} (sha256 "
                f"{esc.get('model_sha256', '') or 'n/a'}), template {esc.get('template_id', '')},"
                f" {esc.get('time', '')}</p><details><summary>Prompt</summary>"
                f"<pre>{esc.get('prompt', '')}</pre></details></div>"
            )
    return "".join(out)


def _generated_html(text: str) -> str:
    sentences = [str(s) for s in _json_list(text)]
    items = "".join(f"<li><code>{html.escape(s[:300])}</code></li>" for s in sentences[:50])
    return f"<h2>Generated cells ({len(sentences)})</h2><ol>{items}</ol>"


def _cell(value: Any) -> str:
    if isinstance(value, str) and value.startswith("{"):
        try:
            return html.escape(json.dumps(json.loads(value), indent=1))
        except ValueError:
            pass
    return html.escape(str(value))


def write_report(
    path: str | Path,
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> Path:
    """Write :func:`render_report` to ``out`` atomically."""
    return write_html(render_report(path, progress, cancel), out, overwrite=overwrite)


def write_html(text: str, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write report HTML to ``out`` atomically."""
    with atomic_write(out, overwrite=overwrite) as fh:
        fh.write(text.encode("utf-8"))
    return Path(out)
