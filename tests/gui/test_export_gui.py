"""Export dialog: annotated copy, CSV and report from the window's results; the input is safe."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
from PySide6.QtWidgets import QMessageBox

from c2s_desktop.core.session import KIND_SUMMARY, Conversation, GeneratedSet, Turn, rows_key
from c2s_desktop.core.tasks.annotate import AnnotateResult

from ..conftest import sha256


def add_results(w) -> AnnotateResult:
    """Results as the annotate task and the assistant leave them in the window."""
    n = w.dataset.n_cells
    rows = np.arange(0, n, 3)
    result = AnnotateResult(
        rows=rows,
        labels=np.where(rows % 2 == 0, "T cell", "B cell").astype(object),
        probability=np.full(len(rows), 0.8, np.float32),
        candidates=("T cell", "B cell"),
        mode="per-cell",
        scored_rows=rows,
        scored_probs=np.full((len(rows), 2), 0.5, np.float32),
        clusters=None,
        cluster_agreement={},
        template_id="c2s/cell_type_prediction/0",
        n_genes=200,
        seconds_per_scored_cell=0.01,
    )
    w.results["annotate"] = result
    sel = np.arange(5, 25)
    w.set_selection(sel)
    turn = Turn(KIND_SUMMARY, "", "Mostly <monocytes> here.", prompt="PROMPT", markers=["LYZ"])
    conv = Conversation(rows_key(sel), "Selection of 20 cells", 20, [turn])
    w.assistant.set_conversations({conv.key: conv})
    w.generator.set_sets([GeneratedSet("B cell", ["CD79A MS4A1 CD74"], {"temperature": 1.0})])
    return result


def test_export_writes_copy_csv_and_report(qtbot, loaded, tmp_path):
    w = loaded
    result = add_results(w)
    before = sha256(w.dataset.path)
    dialog = w.exporter.open_dialog()
    src = w.dataset.path
    defaults = dialog.targets()
    assert defaults["h5ad"] == src.with_name(src.stem + "_c2s.h5ad")
    assert all(p != src for p in defaults.values())
    assert "cell types for" in dialog.summary.text()
    dialog.reject()
    targets = {k: tmp_path / p.name for k, p in defaults.items()}
    assert w.exporter.export(targets)
    qtbot.waitUntil(lambda: len(w.exporter.written) == 3, timeout=30_000)
    assert sha256(w.dataset.path) == before
    back = ad.read_h5ad(targets["h5ad"])
    assert back.obs["c2s_cell_type"].iloc[0] == "T cell"
    assert back.obs["c2s_cell_type"].iloc[3] == "B cell"
    assert np.isnan(back.obs["c2s_cell_type_prob"].iloc[1])
    records = back.uns["c2s"]
    assert records["annotate"]["input_sha256"] == before
    assert "Mostly <monocytes> here." in records["assistant"]["conversations"]
    assert "CD79A MS4A1 CD74" in records["generate"]["sentences"]
    lines = targets["csv"].read_text().splitlines()
    assert lines[0] == "cell_id,selected,c2s_cell_type,c2s_cell_type_prob"
    assert lines[1].endswith(",0,T cell,0.8") and lines[6].split(",")[1] == "1"
    assert len(lines) == w.dataset.n_cells + 1
    html = targets["report"].read_text()
    assert "Mostly &lt;monocytes&gt; here." in html and "PROMPT" in html and "LYZ" in html
    assert "<svg" in html and before in html and "Generated cells (1)" in html
    assert len(result.rows) > 0


def test_export_confirms_before_replacing(qtbot, loaded, tmp_path, monkeypatch):
    w = loaded
    add_results(w)
    csv = tmp_path / "out.csv"
    csv.write_text("keep")
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    assert not w.exporter.export({"csv": csv})
    assert csv.read_text() == "keep" and "nothing was replaced" in w.status.text()
    asked: list[str] = []

    def yes(_parent, _title, text, *args, **kwargs):
        asked.append(text)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", yes)
    assert w.exporter.export({"csv": csv})
    qtbot.waitUntil(lambda: w.exporter.written == [csv], timeout=30_000)
    assert str(csv) in asked[0] and csv.read_text().startswith("cell_id,")


def test_export_refuses_the_input_file(qtbot, loaded, monkeypatch):
    w = loaded
    add_results(w)
    src = w.dataset.path
    before = sha256(src)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    assert not w.exporter.export({"h5ad": src})
    assert "input file" in w.last_error.text()
    assert sha256(src) == before and not w.runner.is_busy("export")


def test_export_action_in_file_menu(loaded):
    action = loaded.exporter.action
    assert action.shortcut().toString() == "Ctrl+Shift+E"
    assert action in loaded.menus["file"].actions()
    action.trigger()
    assert loaded.exporter.dialog is not None and loaded.exporter.dialog.isVisible()
    loaded.exporter.dialog.reject()


def test_annotation_record_is_the_same_from_the_cli_and_the_window(
    qtbot, with_model, tmp_path, capsys
):
    """One task, one set of options: the window's export and ``c2s annotate`` write the same
    fields and the same ``uns['c2s']['annotate']`` record (its time aside)."""
    from c2s_desktop.core.model_store import demo_model_path
    from c2s_desktop.core.results import CELL_TYPE, CELL_TYPE_PROB, UNS_KEY
    from c2s_desktop.core.tasks.annotate import MODE_PER_CELL
    from c2s_desktop.gui.panels.annotate import CANDIDATES_TYPED

    from ..test_cli import run

    w = with_model
    ds = w.dataset
    rows = np.arange(0, 40, 4)
    labels = ["CD14+ Monocyte", "CD19+ B", "CD56+ NK"]
    w.set_selection(rows)
    panel = w.annotate_panel
    panel.scope_selection.setChecked(True)
    panel.mode_box.setCurrentText(MODE_PER_CELL)
    panel.candidates_box.setCurrentText(CANDIDATES_TYPED)
    panel.candidates_edit.setPlainText("\n".join(labels))
    w.annotate.run()
    qtbot.waitUntil(lambda: "annotate" in w.results, timeout=60_000)
    qtbot.waitUntil(lambda: not w.runner.is_busy() and bool(w.engine_host.sha256), timeout=60_000)
    assert w.exporter.export({"h5ad": tmp_path / "window.h5ad"})
    qtbot.waitUntil(lambda: len(w.exporter.written) == 1, timeout=30_000)
    assert w.last_error is None

    cells, candidates = tmp_path / "cells.txt", tmp_path / "labels.txt"
    cells.write_text("\n".join(map(str, ds.cell_ids[rows])) + "\n")
    candidates.write_text("\n".join(labels) + "\n")
    code, _, err = run(
        capsys,
        "annotate",
        ds.path,
        "--model",
        demo_model_path(),
        "--threads",
        "1",  # as the window (with_model)
        "-o",
        tmp_path / "cli.h5ad",
        "--candidates",
        candidates,
        "--cells",
        cells,
        "--mode",
        MODE_PER_CELL,
        "--cluster-key",
        panel.cluster_key(),
    )
    assert code == 0, err
    window, cli = (ad.read_h5ad(tmp_path / f"{n}.h5ad") for n in ("window", "cli"))
    records = [dict(a.uns[UNS_KEY]["annotate"]) for a in (window, cli)]
    assert all(r.pop("time") for r in records)
    assert list(records[0].items()) == list(records[1].items())
    assert json.loads(records[1]["parameters"])["candidates"] == labels
    assert records[1]["model_sha256"] == sha256(demo_model_path())
    for a in (window, cli):
        assert a.obs[CELL_TYPE].notna().sum() == len(rows)
        assert np.isnan(a.obs[CELL_TYPE_PROB].to_numpy()).sum() == ds.n_cells - len(rows)
