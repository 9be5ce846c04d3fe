"""A self-contained HTML report of the C2S results stored in an ``.h5ad`` (figures inline SVG)."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from .. import __version__
from .anndata_io import read_elem
from .atomic import atomic_write
from .errors import DataError, InputFileError
from .palette import PALETTE

MAX_POINTS = 20_000
LOW_CONFIDENCE = 0.5


def _load(path: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, Any]]:
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
            uns = read_elem(f["uns/c2s"]) if "uns/c2s" in f else {}
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
    return obs, obsm, uns


def _scatter_svg(xy: np.ndarray, labels: pd.Series | None, size: int = 520) -> str:
    rng = np.random.default_rng(0)
    idx = np.flatnonzero(np.isfinite(xy[:, :2]).all(axis=1))
    if labels is not None:
        idx = idx[pd.Series(labels).notna().to_numpy()[idx]]
    if len(idx) > MAX_POINTS:
        idx = np.sort(rng.choice(idx, MAX_POINTS, replace=False))
    pts = xy[idx, :2].astype(float)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    scaled = (pts - lo) / np.where(hi - lo == 0, 1, hi - lo) * (size - 20) + 10
    cats = (
        list(pd.Series(labels).astype(str).value_counts().index)
        if labels is not None
        else ["cells"]
    )
    colour = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(cats)}
    values = labels.astype(str).to_numpy()[idx] if labels is not None else ["cells"] * len(idx)
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{size - y:.1f}" r="1.6" fill="{colour[v]}"/>'
        for (x, y), v in zip(scaled, values, strict=True)
    )
    legend = "".join(
        f'<li><span style="background:{colour[c]}"></span>{html.escape(c)}</li>' for c in cats[:30]
    )
    return (
        f'<div class="fig"><svg width="{size}" height="{size}" viewBox="0 0 {size} {size}">'
        f"{dots}</svg><ul class=legend>{legend}</ul></div>"
    )


def _bars(counts: pd.Series) -> str:
    top = max(1, int(counts.max()))
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{v:,}</td><td><div class=bar "
        f'style="width:{300 * v / top:.0f}px"></div></td></tr>'
        for k, v in counts.items()
    )
    return f"<table><tr><th>label</th><th>cells</th><th></th></tr>{rows}</table>"


def render_report(path: str | Path) -> str:
    """The report HTML for the results in ``path``."""
    p = Path(path)
    obs, obsm, uns = _load(p)
    result_cols = [c for c in obs.columns if str(c).startswith("c2s_")]
    if not result_cols and not uns and not any(k.startswith("X_c2s") for k in obsm):
        raise DataError(
            "no C2S results in this file",
            path=p,
            hint="run c2s annotate/embed/summarize with -o first",
        )
    return render_results(p.name, obs, obsm, uns)


def render_results(
    name: str,
    obs: pd.DataFrame,
    obsm: Mapping[str, np.ndarray],
    uns: Mapping[str, Any],
) -> str:
    """The report HTML for results held in memory: ``obs`` columns ``c2s_*``, 2-D ``obsm``
    embeddings, and ``uns['c2s']`` records (provenance; a record with a ``conversations`` JSON
    list is shown as the assistant's answers, one with ``sentences`` as generated cells)."""
    parts = [f"<h1>C2S Desktop report</h1><p>{html.escape(name)} — {len(obs):,} cells</p>"]
    labels = obs.get("c2s_cell_type")
    for key in ("X_umap", "X_c2s_2d", "X_tsne", "X_pca", "X_c2s", *obsm):
        if key in obsm and obsm[key].ndim == 2 and obsm[key].shape[1] >= 2:
            parts.append(f"<h2>Cells ({html.escape(key)})</h2>" + _scatter_svg(obsm[key], labels))
            break
    if labels is not None:
        counts = labels.dropna().astype(str).value_counts()
        parts.append("<h2>Predicted cell types</h2>" + _bars(counts))
        if "c2s_cell_type_prob" in obs:
            prob = obs["c2s_cell_type_prob"].astype(float)
            low = obs.index[prob < LOW_CONFIDENCE]
            parts.append(
                f"<p>{len(low):,} cells with probability below {LOW_CONFIDENCE}"
                f" (median probability {np.nanmedian(prob):.2f}).</p>"
            )
    for key, record in uns.items():
        record = dict(record)
        if "conversations" in record:
            parts.append(_conversations_html(str(record.pop("conversations"))))
        if "sentences" in record:
            parts.append(_generated_html(str(record.pop("sentences"))))
        rows = "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{_cell(v)}</td></tr>" for k, v in record.items()
        )
        parts.append(
            f"<h2>Provenance: {html.escape(str(key))}</h2><table class=prov>{rows}</table>"
        )
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
        ".fig{display:flex;gap:1em}.legend{list-style:none;font-size:12px}"
        ".legend span{display:inline-block;width:10px;height:10px;margin-right:4px}"
        ".bar{background:#1f77b4;height:10px}td,th{padding:2px 8px;text-align:left;"
        "vertical-align:top}.prov td{white-space:pre-wrap;font-family:monospace}"
        ".turn{border-left:3px solid #1f77b4;padding:0 1em;margin:1em 0}"
        ".warn{color:#a04000}.meta{color:#666;font-size:12px}pre{white-space:pre-wrap}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>C2S report</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}"
        f"<footer><p>Made offline by c2s-desktop {__version__}.</p></footer></body></html>"
    )


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


def write_report(path: str | Path, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write :func:`render_report` to ``out`` atomically."""
    return write_html(render_report(path), out, overwrite=overwrite)


def write_html(text: str, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write report HTML to ``out`` atomically."""
    with atomic_write(out, overwrite=overwrite) as fh:
        fh.write(text.encode("utf-8"))
    return Path(out)
