"""Inline SVG figures of the HTML report: cell map, histogram with thresholds, marker dot plot.

Figures stay small for large files: the map draws at most :data:`MAX_POINTS` cells (a seeded
random sample) as one SVG path per category, never one element per cell.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .palette import PALETTE

MAX_POINTS = 20_000
MAX_LEGEND = 30
_COLD, _HOT = (0xEE, 0xEE, 0xF4), (0x08, 0x30, 0x6B)  # dot-plot colour scale ends


def _num(value: float) -> str:
    return f"{value:.1f}"


def category_colours(labels: pd.Series) -> dict[str, str]:
    """Palette colour per category, most frequent first (the order the app uses)."""
    cats = list(labels.dropna().astype(str).value_counts().index)
    return {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(cats)}


def scatter_svg(xy: np.ndarray, labels: pd.Series | None, size: int = 460, title: str = "") -> str:
    """Cells at ``xy[:, :2]`` coloured by ``labels`` (missing labels left out), with a legend."""
    idx = np.flatnonzero(np.isfinite(xy[:, :2]).all(axis=1))
    values = np.full(len(xy), "cells", dtype=object)
    if labels is not None:
        series = pd.Series(labels).reset_index(drop=True)
        idx = idx[series.notna().to_numpy()[idx]]
        values = series.astype(str).to_numpy(dtype=object)
    n_drawable = len(idx)
    if len(idx) > MAX_POINTS:
        idx = np.sort(np.random.default_rng(0).choice(idx, MAX_POINTS, replace=False))
    if len(idx) == 0:
        return "<p>No cells with coordinates to draw.</p>"
    pts = xy[idx, :2].astype(float)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    scaled = (pts - lo) / np.where(hi - lo == 0, 1, hi - lo) * (size - 20) + 10
    colour = category_colours(pd.Series(values[idx])) if labels is not None else {"cells": "#555"}
    paths = []
    for cat in reversed(list(colour)):  # the largest group first, small ones drawn on top
        mask = values[idx] == cat
        d = "".join(f"M{x:.1f} {size - y:.1f}h.1" for x, y in scaled[mask])
        paths.append(
            f'<path d="{d}" stroke="{colour[cat]}" stroke-width="3.2" '
            'stroke-linecap="round" fill="none"/>'
        )
    legend = "".join(
        f'<li><span style="background:{colour[c]}"></span>{html.escape(c)}</li>'
        for c in list(colour)[:MAX_LEGEND]
    )
    if len(colour) > MAX_LEGEND:
        legend += f"<li>… {len(colour) - MAX_LEGEND} more</li>"
    note = (
        f"<p class=meta>{len(idx):,} of {n_drawable:,} cells drawn (random sample)</p>"
        if len(idx) < n_drawable
        else ""
    )
    head = f"<h3>{html.escape(title)}</h3>" if title else ""
    return (
        f'<div class="figure">{head}<div class="fig"><svg width="{size}" height="{size}" '
        f'viewBox="0 0 {size} {size}" role="img">{"".join(paths)}</svg>'
        f"<ul class=legend>{legend}</ul></div>{note}</div>"
    )


def histogram_svg(
    values: np.ndarray,
    title: str,
    thresholds: Sequence[tuple[float, str]] = (),
    bins: int = 40,
    width: int = 300,
    height: int = 150,
) -> str:
    """A histogram of the finite ``values`` with a dashed line at each ``(value, label)``."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    marks = [(float(t), lab) for t, lab in thresholds if t is not None and np.isfinite(t)]
    if len(v) == 0:
        return f"<div class=hist><p class=meta>{html.escape(title)}: no values</p></div>"
    lo = min([float(v.min()), *(t for t, _ in marks)])
    hi = max([float(v.max()), *(t for t, _ in marks)])
    if hi <= lo:
        hi = lo + 1.0
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    top = max(1, int(counts.max()))
    left, bottom, plot_w, plot_h = 8, height - 22, width - 16, height - 40

    def x_of(value: float) -> float:
        return left + (value - lo) / (hi - lo) * plot_w

    bar_w = plot_w / bins
    bars = "".join(
        f'<rect x="{_num(left + i * bar_w)}" y="{_num(bottom - c / top * plot_h)}" '
        f'width="{_num(max(bar_w - 0.5, 0.5))}" height="{_num(c / top * plot_h)}" fill="#4c72b0"/>'
        for i, c in enumerate(counts)
        if c
    )
    lines = "".join(
        f'<line x1="{_num(x_of(t))}" x2="{_num(x_of(t))}" y1="{bottom - plot_h - 4}" '
        f'y2="{bottom}" stroke="#c0392b" stroke-width="1.5" stroke-dasharray="4 2"/>'
        f'<text x="{_num(x_of(t) + 3)}" y="{bottom - plot_h + 6}" font-size="10" '
        f'fill="#c0392b">{html.escape(lab)}</text>'
        for t, lab in marks
    )
    axis = (
        f'<line x1="{left}" x2="{left + plot_w}" y1="{bottom}" y2="{bottom}" stroke="#888"/>'
        f'<text x="{left}" y="{height - 8}" font-size="10">{lo:,.4g}</text>'
        f'<text x="{left + plot_w}" y="{height - 8}" font-size="10" '
        f'text-anchor="end">{hi:,.4g}</text>'
        f'<text x="{left}" y="12" font-size="10" fill="#666">max {top:,} cells per bin</text>'
    )
    return (
        f"<div class=hist><p><b>{html.escape(title)}</b></p>"
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f"{bars}{lines}{axis}</svg></div>"
    )


def _colour(t: float) -> str:
    t = min(1.0, max(0.0, t)) if np.isfinite(t) else 0.0
    r, g, b = (round(a + (z - a) * t) for a, z in zip(_COLD, _HOT, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def dot_plot_svg(fraction: pd.DataFrame, mean: pd.DataFrame, cell: int = 18) -> str:
    """Groups (rows) × genes (columns): dot area = fraction expressing, colour = mean expression.

    ``fraction`` in [0, 1] and ``mean`` (log-normalised) share index and columns.
    """
    groups = [str(g) for g in fraction.index]
    genes = [str(g) for g in fraction.columns]
    frac = np.nan_to_num(fraction.to_numpy(dtype=float), nan=0.0)
    avg = np.nan_to_num(mean.reindex_like(fraction).to_numpy(dtype=float), nan=0.0)
    vmax = float(avg.max()) if avg.size and avg.max() > 0 else 1.0
    label_w = 8 + 7 * min(30, max([len(g) for g in groups] + [4]))
    head_h = 8 + 6 * min(20, max([len(g) for g in genes] + [4]))
    width = label_w + cell * len(genes) + 150
    height = head_h + cell * len(groups) + 20
    r_max = cell / 2 - 1
    out = []
    for j, gene in enumerate(genes):
        x = label_w + j * cell + cell / 2
        out.append(
            f'<text transform="translate({_num(x + 4)},{head_h - 4}) rotate(-60)" '
            f'font-size="11">{html.escape(gene[:20])}</text>'
        )
    for i, group in enumerate(groups):
        y = head_h + i * cell + cell / 2
        out.append(
            f'<text x="{label_w - 6}" y="{_num(y + 4)}" font-size="11" '
            f'text-anchor="end">{html.escape(group[:30])}</text>'
        )
        for j in range(len(genes)):
            r = np.sqrt(min(1.0, max(0.0, frac[i, j]))) * r_max
            if r >= 0.3:
                x = label_w + j * cell + cell / 2
                out.append(
                    f'<circle cx="{_num(x)}" cy="{_num(y)}" r="{_num(r)}" '
                    f'fill="{_colour(avg[i, j] / vmax)}"><title>{html.escape(group)} · '
                    f"{html.escape(genes[j])}: {frac[i, j]:.0%} expressing, mean "
                    f"{avg[i, j]:.2f}</title></circle>"
                )
    lx = label_w + cell * len(genes) + 20
    for k, f in enumerate((0.25, 0.5, 1.0)):
        y = head_h + 10 + k * cell
        out.append(
            f'<circle cx="{lx}" cy="{y}" r="{_num(np.sqrt(f) * r_max)}" fill="#888"/>'
            f'<text x="{lx + 14}" y="{y + 4}" font-size="10">{f:.0%} expressing</text>'
        )
    y = head_h + 10 + 3 * cell
    stops = "".join(
        f'<rect x="{lx - 8 + k * 10}" y="{y}" width="10" height="10" fill="{_colour(k / 9)}"/>'
        for k in range(10)
    )
    out.append(f'{stops}<text x="{lx - 8}" y="{y + 22}" font-size="10">mean 0 … {vmax:.2f}</text>')
    return (
        f'<div class=scroll><svg width="{width}" height="{max(height, y + 30)}" '
        f'viewBox="0 0 {width} {max(height, y + 30)}" role="img">{"".join(out)}</svg></div>'
    )
