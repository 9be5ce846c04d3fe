"""Every CLI workflow on the demo model and data: inputs byte-identical afterwards, one audit
entry without cell data, and no existing file replaced without --overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from c2s_desktop.core.dataset import open_dataset
from c2s_desktop.core.sentences import cell_sentences
from tests.badinput.corpus import DATA, MODEL
from tests.conftest import sha256
from tests.test_cli import run

CELLS = ("--cells", "louvain=3")


def _workflows(tmp: Path) -> dict[str, tuple[list[str], list[Path], list[Path]]]:
    """name → (argv, input files, outputs)."""
    labels = tmp / "labels.txt"
    labels.write_text("CD14+ Monocyte\nCD19+ B\nCD56+ NK\n")
    template = tmp / "template.txt"
    template.write_text("The top genes of these {organism} cells: {cell_sentence}. Cell type:")
    annotated = tmp / "annotated.h5ad"
    m = ["--model", str(MODEL), "--threads", "1"]  # one thread: see tests/model_fixtures.py
    return {
        "sentences": (["sentences", str(DATA), "-o", str(tmp / "s.csv")], [DATA], [tmp / "s.csv"]),
        "annotate": (
            [
                "annotate",
                str(DATA),
                *m,
                "-o",
                str(annotated),
                "--csv",
                str(tmp / "a.csv"),
                "--candidates",
                str(labels),
                "--mode",
                "representative",
                "--per-cluster",
                "1",
                "--cluster-key",
                "louvain",
            ],
            [DATA, MODEL, labels],
            [annotated, tmp / "a.csv"],
        ),
        "report": (
            ["report", str(annotated), "-o", str(tmp / "r.html")],
            [annotated],
            [tmp / "r.html"],
        ),
        "embed": (
            ["embed", str(DATA), *m, *CELLS, "-o", str(tmp / "e.h5ad")],
            [DATA, MODEL],
            [tmp / "e.h5ad"],
        ),
        "summarize": (["summarize", str(DATA), *m, *CELLS], [DATA, MODEL], []),
        "ask": (["ask", str(DATA), "Which cell type is this?", *m, *CELLS], [DATA, MODEL], []),
        "generate": (
            [
                "generate",
                *m,
                "--cell-type",
                "CD56+ NK",
                "-n",
                "2",
                "--reference",
                str(DATA),
                "-o",
                str(tmp / "g.h5ad"),
            ],
            [DATA, MODEL],
            [tmp / "g.h5ad"],
        ),
        "prompt": (
            [
                "prompt",
                str(DATA),
                *m,
                "--template",
                str(template),
                "--cells",
                "louvain=3",
                "--max-tokens",
                "8",
                "-o",
                str(tmp / "p.csv"),
            ],
            [DATA, MODEL, template],
            [tmp / "p.csv"],
        ),
    }


ORDER = ["sentences", "annotate", "report", "embed", "summarize", "ask", "generate", "prompt"]


@pytest.fixture(scope="module")
def private_words() -> list[str]:
    """Cell ids and sentence starts of the demo cells: none may reach the audit log."""
    with open_dataset(DATA) as ds:
        ids = [str(c) for c in ds.cell_ids[:50]]
        starts = [" ".join(s.split()[:4]) for s in cell_sentences(ds, range(20))]
    return ids + [s for s in starts if s]


@pytest.mark.slow
def test_workflows_keep_inputs_and_are_audited(capsys, tmp_path, audit_log, private_words):
    flows = _workflows(tmp_path)
    for name in ORDER:
        argv, inputs, outputs = flows[name]
        before = {p: sha256(p) for p in inputs}
        code, stdout, err = run(capsys, *argv)
        assert code == 0, f"{name}: {err}"
        assert {p: sha256(p) for p in inputs} == before, f"{name} changed an input"
        assert all(p.exists() for p in outputs), name
        entry = json.loads(audit_log.read_text("utf-8").splitlines()[-1])
        assert (entry["task"], entry["status"]) == (name, "ok")
        logged = {i["path"]: i["sha256"] for i in entry["inputs"]}
        for p in inputs:
            if p != MODEL:
                assert logged[str(p)] == before[p], name
        if MODEL in inputs:
            assert entry["model"]["sha256"] == before[MODEL]
        assert entry["outputs"] == [str(p) for p in outputs]
        assert entry["duration_s"] > 0
    log = audit_log.read_text("utf-8")
    assert len(log.splitlines()) == len(ORDER)
    leaked = [w for w in private_words if w in log]
    assert not leaked, f"cell data in the audit log: {leaked[:3]}"
    assert "Which cell type" not in log  # the question


@pytest.mark.parametrize("name", ["sentences", "annotate", "report", "embed", "generate", "prompt"])
def test_existing_outputs_are_kept_without_overwrite(capsys, tmp_path, name):
    argv, _, outputs = _workflows(tmp_path)[name]
    if name == "report":
        (tmp_path / "annotated.h5ad").write_bytes(DATA.read_bytes())
    for p in outputs:
        p.write_text("earlier results")
    code, _, err = run(capsys, *argv)
    assert code == 2 and "already exists" in err and "--overwrite" in err
    assert all(p.read_text() == "earlier results" for p in outputs)
    assert not list(tmp_path.glob(".*.part"))
