"""Verification of several types against one reference: label agreement per type and per label."""

from __future__ import annotations

import json

from c2s_quantize.verify import ProbeComparison, VerifyReport, types_markdown


def _probe(name: str, ref: str, cand: str) -> ProbeComparison:
    return ProbeComparison(name, True, 10, 0.1, 1.0, ref, cand, 0.05)


def test_label_agreement_is_counted_per_reference_label():
    probes = (
        _probe("cell_type/0", "B cell", "B cell"),
        _probe("cell_type/1", "B cell", "platelet"),
        _probe("cell_type/2", "platelet", "platelet"),
        _probe("sentence/0", "", ""),  # no labels: not counted
    )
    report = VerifyReport("m.q4_0.gguf", "q4_0", "ref", probes, 0.9, 5.0)
    assert report.label_agreement_by_label == {"B cell": (1, 2), "platelet": (1, 1)}
    assert report.label_agreement == 2 / 3
    summary = report.to_dict()["summary"]
    assert summary["label_agreement_by_label"]["B cell"] == {"agreed": 1, "probes": 2}
    md = report.to_markdown()
    assert "| cell-type label agreement | 2/3 (67%) |" in md
    assert "| B cell | 2 | 1/2 |" in md
    table = types_markdown([report, VerifyReport("m.q8_0.gguf", "q8_0", "ref", probes[2:], 0.9, 5)])
    assert "| type | verdict | top-1 | label agreement | B cell | platelet |" in table
    assert "| q4_0 | PASSED | 100.00% | 67% (2/3) | 1/2 | 1/1 |" in table
    assert "| q8_0 | PASSED | 100.00% | 100% (1/1) | 0/0 | 1/1 |" in table


def test_verify_several_types_against_one_reference(gguf, tmp_path, cli):
    ref, q8, q4 = gguf("gptneox", "f32"), gguf("gptneox", "q8_0"), gguf("gptneox", "q4_0")
    copies = []
    for src in (q8, q4):  # reports go beside each GGUF: keep them out of the shared fixtures
        copies.append(tmp_path / src.name)
        copies[-1].write_bytes(src.read_bytes())
    code, stdout, err = cli(["verify", str(ref), *map(str, copies)])
    assert code == 0, err
    assert stdout.count("verification PASSED") == 2
    assert "| type | verdict | top-1 | label agreement |" in stdout
    rows = {line.split(" | ")[0].strip("| "): line for line in stdout.splitlines()}
    assert rows["q8_0"].startswith("| q8_0 | PASSED |") and rows["q4_0"].startswith("| q4_0 |")
    for path in copies:
        data = json.loads(path.with_name(path.name + ".verify.json").read_text())
        by_label = data["summary"]["label_agreement_by_label"]
        labelled = [p for p in data["probes"] if p["reference_label"]]
        assert sum(v["probes"] for v in by_label.values()) == len(labelled) > 0
        agreed = sum(p["reference_label"] == p["candidate_label"] for p in labelled)
        assert sum(v["agreed"] for v in by_label.values()) == agreed
        assert data["summary"]["label_agreement"] == agreed / len(labelled)
    q8_report = json.loads(copies[0].with_name(copies[0].name + ".verify.json").read_text())
    assert q8_report["summary"]["label_agreement"] == 1.0


def test_one_report_prefix_for_several_ggufs_is_refused(gguf, tmp_path, cli):
    args = ["verify", str(gguf("gptneox", "f32")), str(gguf("gptneox", "q8_0"))]
    code, _, err = cli([*args, str(gguf("gptneox", "q4_0")), "--report", str(tmp_path / "r")])
    assert code == 2
    assert err.count("\n") == 1 and "--report names one report" in err
    assert not list(tmp_path.iterdir())
