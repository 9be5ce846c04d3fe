"""Option groups made from a core dataclass (``c2s preprocess``): the command's options are the
dataclass's fields, in its order, with its defaults, and the command is handed one instance."""

from __future__ import annotations

import dataclasses

import pytest
import typer

from c2s_desktop.cli import app, main
from c2s_desktop.core.preprocess_options import PreprocessOptions

from .conftest import REAL_H5AD


def _preprocess() -> typer.core.TyperCommand:
    from c2s_desktop import cli_prepare  # noqa: F401 - registers preprocess

    return typer.main.get_command(app).commands["preprocess"]  # type: ignore[attr-defined]


def test_options_are_the_fields_in_place_with_the_cores_defaults():
    params = _preprocess().params
    fields = dataclasses.fields(PreprocessOptions)
    assert [p.name for p in params] == [
        "data",
        "output",
        *(f.name for f in fields),
        "labels",
        "overwrite",
    ]
    by_name = {p.name: p for p in params}
    for f in fields:
        assert by_name[f.name].opts == ["--" + f.name.replace("_", "-")]
        assert by_name[f.name].default == f.default


def test_the_command_gets_one_instance_of_the_given_options(tmp_path, monkeypatch):
    import c2s_desktop.core.preprocess as preprocess

    given = []

    def fake(data, output, options, **kwargs):  # noqa: ANN001, ANN003, ANN202
        given.append(options)
        raise KeyboardInterrupt  # stop here: the options are what this test is about

    monkeypatch.setattr(preprocess, "preprocess_file", fake)
    out = tmp_path / "out.h5ad"
    with pytest.raises(SystemExit) as stop:
        main(["preprocess", str(REAL_H5AD), "-o", str(out), "--n-pcs", "7", "--max-pct-mt", "5"])
    assert stop.value.code == 130
    assert given == [PreprocessOptions(n_pcs=7, max_pct_mt=5.0)]
