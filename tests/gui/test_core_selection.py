"""Qt-free selection model: geometry, categories, composition, named selections, CSV, session."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from c2s_desktop.core.errors import DataError, InputFileError
from c2s_desktop.core.selection import (
    MODE_ADD,
    MODE_SUBTRACT,
    SelectionModel,
    composition,
    export_csv,
    load_selections,
    points_in_polygon,
    points_in_rect,
    rows_in_categories,
    save_selections,
    session_file,
)


def test_polygon_and_rectangle_hit_tests():
    xy = np.array([[0.5, 0.5], [2.0, 2.0], [0.1, 0.9], [0.9, 0.1], [1.5, 0.5]], np.float32)
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]])
    assert points_in_polygon(xy, square).tolist() == [True, False, True, True, False]
    concave = np.array([[0, 0], [2, 0], [2, 1], [1, 0.25], [0, 1]])  # notch above (1, 0.5)
    assert points_in_polygon(np.array([[1.0, 0.5], [0.2, 0.2]]), concave).tolist() == [
        False,
        True,
    ]
    assert points_in_rect(xy, (1, 1), (0, 0)).tolist() == [True, False, True, True, False]
    assert not points_in_polygon(xy, square[:2]).any()  # a line selects nothing


def test_selection_model_modes_and_named_selections():
    model = SelectionModel(10)
    model.update([3, 1, 1])
    assert model.current.tolist() == [1, 3]
    assert model.update([5], MODE_ADD).tolist() == [1, 3, 5]
    assert model.update([1], MODE_SUBTRACT).tolist() == [3, 5]
    assert model.mask().sum() == 2
    model.save("  pair ")
    model.update([])
    assert model.restore("pair").tolist() == [3, 5]
    with pytest.raises(DataError):
        model.save("")
    with pytest.raises(DataError):
        model.update([10])
    model.update([])
    with pytest.raises(DataError, match="nothing is selected"):
        model.save("empty")


def test_selection_model_tells_its_subscribers_of_every_change(tmp_path):
    model = SelectionModel(10)
    seen: list[tuple[int, int]] = []
    stop = model.subscribe(lambda: seen.append((len(model.current), len(model.saved))))
    model.update([1, 2, 3])
    model.update([3, 4], MODE_ADD)
    model.save("a")
    model.restore("a")
    model.remove("missing")  # nothing changed: no event
    model.remove("a")
    assert seen == [(3, 0), (4, 0), (4, 1), (4, 1), (4, 0)]
    other = SelectionModel(10)
    other.update([1])
    other.save("b")
    path = save_selections(tmp_path / "s.json", tmp_path / "data.h5ad", other)
    assert load_selections(path, model) == 1 and seen[-1] == (4, 1)
    stop()
    model.update([])
    assert len(seen) == 6


def test_categories_and_composition():
    values = pd.Series(pd.Categorical(["B", "T", "B", None, "T", "T"]))
    assert rows_in_categories(values, ["T", "NA"]).tolist() == [1, 3, 4, 5]
    comp = composition(values, np.array([0, 1, 4]))
    assert [(c.category, c.n_selected, c.n_total) for c in comp] == [("T", 2, 3), ("B", 1, 2)]
    assert comp[0].fraction == pytest.approx(2 / 3)


def test_export_csv_quotes_and_is_complete(tmp_path):
    ids = np.array(["c0", "c,1", "c2"])
    obs = pd.DataFrame({"type": ["B", 'T "x"', None]})
    out = export_csv(tmp_path / "sel.csv", ids, np.array([1, 2]), obs, ["type"])
    assert out.read_text() == 'cell_id,type\n"c,1","T ""x"""\nc2,\n'


def test_session_roundtrip_and_damaged_file(tmp_path, monkeypatch):
    monkeypatch.setenv("C2S_SESSION_DIR", str(tmp_path / "s"))
    data = tmp_path / "d.h5ad"
    data.write_bytes(b"x")
    model = SelectionModel(8)
    model.update([1, 2])
    model.save("a")
    path = save_selections(session_file(data), data, model)
    assert path.parent.parent == tmp_path / "s"
    again = SelectionModel(8)
    assert load_selections(path, again) == 1 and again.saved["a"].rows.tolist() == [1, 2]
    assert load_selections(path, SelectionModel(9)) == 0  # another shape: ignored
    path.write_text("{broken")
    with pytest.raises(InputFileError, match="damaged"):
        load_selections(path, again)
