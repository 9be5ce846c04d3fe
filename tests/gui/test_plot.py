"""The rasterised embedding: pixel placement, draw order, and a 1M-point view change."""

from __future__ import annotations

import numpy as np
import pandas as pd

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


def test_million_points_view_change_renders(qtbot):
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
    full = view.render_now()
    assert view.image_pixels() > 0
    view.box.scaleBy((0.5, 0.5))  # zoom in, then pan
    zoom = view.render_now()
    view.box.translateBy(x=3.0)
    pan = view.render_now()
    view.set_selection(np.flatnonzero(labels == 3))
    select = view.render_now()
    assert view.image_pixels() > 0
    print(
        f"\n1M points, {view.box.width():.0f}x{view.box.height():.0f} px: full {full:.0f} ms, "
        f"zoom {zoom:.0f} ms, pan {pan:.0f} ms, with selection {select:.0f} ms"
    )
