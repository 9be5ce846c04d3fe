"""The rasterised embedding: pixel placement, draw order, and a 1M-point view change."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from c2s_desktop.gui.plot import EmbeddingView, category_colours, gene_colours, rasterize


def test_rasterize_places_points_and_later_points_win():
    xy = np.array([[0.5, 0.5], [9.5, 0.5], [0.5, 9.5], [0.6, 0.6], [20, 20]], np.float32)
    ids = np.arange(5, dtype=np.int32)
    img = rasterize(xy, ids, (0, 10), (0, 10), (10, 10))
    assert img[0, 0] == 3  # point 3 drawn after point 0 on the same pixel
    assert img[0, 9] == 1 and img[9, 0] == 2  # row 0 is the bottom
    assert 4 not in img  # outside the view


def test_colour_tables():
    assert (
        category_colours(3).shape == (3, 4) and len({tuple(c) for c in category_colours(40)}) == 40
    )
    colours = gene_colours(np.array([0.0, 1.0, 2.0], np.float32))
    assert colours.dtype == np.uint8 and not np.array_equal(colours[0], colours[2])


@pytest.mark.slow
def test_million_points_view_change_renders(qtbot):
    """A million cells through zoom, pan and selection: every render draws the cells where
    they are (the cell found at a cell's position lies within the pick radius of it)."""
    n = 1_000_000
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=10, size=(12, 2))
    labels = rng.integers(0, 12, n)
    xy = (centres[labels] + rng.normal(size=(n, 2))).astype(np.float32)
    obs = pd.DataFrame({"cluster": pd.Categorical(labels.astype(str))})
    view = EmbeddingView()
    qtbot.addWidget(view)
    view.resize(1000, 700)
    view.show()
    view.set_dataset(obs, np.arange(n).astype(str), ["X_umap"], ["cluster"], [])
    view.set_embedding(xy)

    def drawn_where_they_are() -> None:
        (x0, x1), (y0, y1) = view.box.viewRange()
        inside = np.flatnonzero(
            (xy[:, 0] > x0) & (xy[:, 0] < x1) & (xy[:, 1] > y0) & (xy[:, 1] < y1)
        )
        assert len(inside) and view.image_pixels() > 0
        px, py = (x1 - x0) / view.box.width(), (y1 - y0) / view.box.height()
        for i in rng.choice(inside, 20, replace=False):
            cell = view.cell_at(float(xy[i, 0]), float(xy[i, 1]))
            assert cell is not None
            assert abs(xy[cell, 0] - xy[i, 0]) <= 5 * px and abs(xy[cell, 1] - xy[i, 1]) <= 5 * py

    view.render_now()
    drawn_where_they_are()
    view.box.scaleBy((0.5, 0.5))  # zoom in, then pan
    view.render_now()
    drawn_where_they_are()
    view.box.translateBy(x=3.0)
    view.render_now()
    drawn_where_they_are()
    view.set_selection(np.flatnonzero(labels == 3))
    view.render_now()
    drawn_where_they_are()
