"""Every bad input through the real CLI: exit 2, one ``error:`` line naming the file, no
traceback, nothing written (no output, no temporary file), inputs untouched."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from c2s_quantize.cli import main as quantize_main
from tests.test_cli import run

from .corpus import CASES, MODEL, OUT, QUANTIZE, Case


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path → sha256 (or "dir") of everything under ``folder``."""
    found = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        found[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return found


def run_quantize(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        quantize_main(args)
        raise SystemExit(0)
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out, captured.err


def check_one_line(case: Case, code: int, err: str, bad: Path) -> str:
    lines = err.strip().splitlines()
    assert code == 2, f"{case.id}: exit {code}\n{err}"
    assert "Traceback" not in err and "internal error" not in err, err
    assert len(lines) == 1, f"{case.id}: {len(lines)} lines on stderr:\n{err}"
    line = lines[0]
    assert line.startswith("error: "), line
    assert case.phrase in line, f"{case.id}: {case.phrase!r} not in {line!r}"
    if case.names_file:
        assert str(bad) in line, f"{case.id}: the line does not name {bad}: {line}"
    return line


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_clear_line_and_writes_nothing(case, tmp_path, capsys, audit_log):
    bad = case.build(tmp_path)
    capsys.readouterr()  # what building printed
    (tmp_path / OUT).mkdir(exist_ok=True)
    before = snapshot(tmp_path)
    argv = case.argv(bad, tmp_path / OUT)
    if case.tool == QUANTIZE:
        code, _, err = run_quantize(capsys, argv)
    else:
        code, _, err = run(capsys, *argv)
    print(f"{case.id}: {check_one_line(case, code, err, bad)}")
    assert snapshot(tmp_path) == before, "files were written, changed or left behind"
    entries = (
        [json.loads(line) for line in audit_log.read_text().splitlines()]
        if (audit_log.exists())
        else []
    )
    if entries:  # jobs that started are recorded as failed, without outputs
        assert entries[-1]["status"] == "failed" and entries[-1]["outputs"] == []


FAIL_ON_OPEN = [c for c in CASES if c.kind == "h5ad" and not c.opens]


@pytest.mark.parametrize("case", FAIL_ON_OPEN, ids=[c.id for c in FAIL_ON_OPEN])
def test_bad_h5ad_through_info_and_annotate(case, tmp_path, capsys):
    bad = case.build(tmp_path)
    capsys.readouterr()
    (tmp_path / OUT).mkdir(exist_ok=True)
    before = snapshot(tmp_path)
    out = tmp_path / OUT / "a.h5ad"
    for argv in (
        ["info", str(bad), "--json"],
        ["annotate", str(bad), "--model", str(MODEL), "-o", str(out)],
    ):
        code, stdout, err = run(capsys, *argv)
        check_one_line(case, code, err, bad)
        assert stdout == ""
    assert snapshot(tmp_path) == before


def test_corpus_is_broad():
    kinds = {k: sum(c.kind == k for c in CASES) for k in ("h5ad", "gguf", "checkpoint", "cli")}
    assert len(CASES) >= 25 and all(n >= 5 for n in kinds.values()), kinds
    assert len({c.id for c in CASES}) == len(CASES)


SUBPROCESS_CASES = ("h5ad-truncated", "gguf-unknown-architecture", "ckpt-truncated")


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_real_console_scripts(case_id, tmp_path):
    """The installed entry points as separate processes (what a user runs)."""
    case = next(c for c in CASES if c.id == case_id)
    bad = case.build(tmp_path)
    (tmp_path / OUT).mkdir()
    before = snapshot(tmp_path)
    script = Path(sys.executable).parent / ("c2s-quantize" if case.tool == QUANTIZE else "c2s")
    done = subprocess.run(
        [str(script), *case.argv(bad, tmp_path / OUT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    check_one_line(case, done.returncode, done.stderr, bad)
    assert snapshot(tmp_path) == before
