"""The audit log: one JSON line per job, safe with two writers, no cell data, viewable."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading

import pytest

from c2s_desktop.core import audit
from c2s_desktop.core.errors import Cancelled, DataError
from tests.test_cli import run


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_record_writes_one_complete_line(tmp_path, audit_log):
    data = tmp_path / "data.h5ad"
    data.write_bytes(b"cells")
    model = tmp_path / "m.gguf"
    model.write_bytes(b"weights")
    entry = audit.record(
        "annotate",
        inputs=[data],
        model=model,
        params={"mode": "per-cell", "rows": [1, 2, 3], "question": "?", "n": 3},
        outputs=[tmp_path / "out.h5ad"],
        duration_s=1.23456,
    )
    assert entry is not None and audit.audit_path() == audit_log
    (saved,) = lines(audit_log)
    assert saved == entry
    assert saved["task"] == "annotate" and saved["status"] == "ok"
    assert saved["inputs"] == [{"path": str(data), "sha256": hashlib.sha256(b"cells").hexdigest()}]
    assert saved["model"]["sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert saved["model"]["name"] == "m.gguf" and saved["duration_s"] == 1.235
    assert saved["params"] == {"mode": "per-cell", "n": 3}  # rows and free text are dropped
    assert saved["time"].endswith("+00:00") and saved["app"]


def test_job_status_follows_the_outcome(tmp_path, audit_log):
    with audit.job("embed", engine="http://127.0.0.1:8080") as job:
        job.outputs.append(tmp_path / "e.h5ad")
    with pytest.raises(Cancelled), audit.job("summarize"):
        raise Cancelled()
    with pytest.raises(DataError), audit.job("ask"):
        raise DataError("bad cells (cell 'AAACCTG-1')")
    first, second, third = lines(audit_log)
    assert (first["status"], first["engine"], first["model"]) == (
        "ok",
        "http://127.0.0.1:8080",
        None,
    )
    assert first["outputs"] == [str(tmp_path / "e.h5ad")]
    assert second["status"] == "cancelled" and "error" not in second
    assert third["status"] == "failed" and third["error"] == "DataError"
    assert "AAACCTG" not in audit_log.read_text()  # error messages can name cells: not logged


def test_credentials_never_reach_the_log(audit_log):
    audit.record(
        "ask",
        engine="https://user:s3cret@models.example:8443/v1?api_key=abc",
        params={"api_key": "sk-123", "cluster_key": "louvain"},
    )
    (entry,) = lines(audit_log)
    assert entry["engine"] == "https://models.example:8443/v1"
    assert entry["params"] == {"cluster_key": "louvain"}
    assert "s3cret" not in audit_log.read_text() and "sk-123" not in audit_log.read_text()


def test_hash_is_cached_by_path_size_and_mtime(tmp_path, audit_log):
    data = tmp_path / "big.bin"
    data.write_bytes(b"a" * 1000)
    first = audit.file_sha256(data)
    stat = data.stat()
    data.write_bytes(b"b" * 1000)  # same size; restore the mtime: the cached hash is reused
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert audit.file_sha256(data) == first
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert audit.file_sha256(data) == hashlib.sha256(b"b" * 1000).hexdigest()
    assert audit.file_sha256(tmp_path / "missing") is None


WRITER = """
import sys
from c2s_desktop.core import audit
for i in range(int(sys.argv[1])):
    audit.record("sentences", params={"writer": sys.argv[2], "i": i, "pad": ["x" * 200] * 50})
"""


def test_two_processes_append_without_mixing_lines(tmp_path, audit_log):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    procs = [subprocess.Popen([sys.executable, str(script), "300", name]) for name in ("a", "b")]
    threads = [threading.Thread(target=p.wait) for p in procs]
    for t in threads:
        t.start()
    for i in range(100):  # and this process at the same time
        audit.record("sentences", params={"writer": "c", "i": i})
    for t in threads:
        t.join(120)
    assert [p.returncode for p in procs] == [0, 0]
    entries = lines(audit_log)  # every line parses: no interleaving
    writers = [e["params"]["writer"] for e in entries]
    assert (writers.count("a"), writers.count("b"), writers.count("c")) == (300, 300, 100)


def test_unwritable_log_does_not_fail_the_job(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(audit.AUDIT_ENV, str(blocker / "audit.jsonl"))  # parent is a file
    assert audit.record("sentences") is None


def test_read_skips_damaged_lines(audit_log):
    audit.record("embed")
    with open(audit_log, "ab") as fh:
        fh.write(b'{"task": "half a line\n\xff\xfe\n')
    audit.record("report")
    assert [e["task"] for e in audit.read_entries()] == ["embed", "report"]
    assert [e["task"] for e in audit.read_entries(1)] == ["report"]


def test_cli_audit_shows_entries(capsys, tmp_path, real_h5ad, audit_log):
    out = tmp_path / "s.csv"
    assert run(capsys, "sentences", real_h5ad, "-o", out)[0] == 0
    code, stdout, err = run(capsys, "audit", "--json")
    assert code == 0
    (entry,) = [json.loads(line) for line in stdout.splitlines()]
    assert entry["task"] == "sentences" and entry["outputs"] == [str(out)]
    code, stdout, err = run(capsys, "audit", "-n", "5")
    assert code == 0 and "sentences" in stdout and "ok" in stdout and str(audit_log) in err
    assert "pbmc_counts_small.h5ad" in stdout


def test_audit_dialog_lists_entries(qtbot, tmp_path, audit_log, monkeypatch):
    pytest.importorskip("PySide6")
    from PySide6.QtGui import QDesktopServices

    from c2s_desktop.gui.audit_dialog import AuditDialog

    audit.record("annotate", inputs=[audit_log], outputs=[tmp_path / "a.h5ad"])
    dialog = AuditDialog(None)
    qtbot.addWidget(dialog)
    assert dialog.table.rowCount() == 1
    assert dialog.table.item(0, 1).text() == "annotate"
    assert dialog.table.item(0, 2).text() == "ok"
    audit.record("report")
    dialog.refresh_button.click()
    assert dialog.table.rowCount() == 2 and dialog.table.item(0, 1).text() == "report"
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    dialog.folder_button.click()  # the system file manager is not started in tests
    assert opened and opened[0].toLocalFile() == str(audit_log.parent)
