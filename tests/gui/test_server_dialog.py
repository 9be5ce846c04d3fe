"""The "Connect to a server" dialog: settings out, the API key kept only on request, and a
background connection test against a real llama-cpp-python server on loopback."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server] (dev extra)")

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QDialog  # noqa: E402

from c2s_desktop.gui.panels.server import ServerDialog  # noqa: E402
from tests.engine.llama_server import free_port  # noqa: E402

from .conftest import DEMO_ALIAS as ALIAS  # noqa: E402


def make(qtbot) -> ServerDialog:  # noqa: ANN001
    dialog = ServerDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def test_settings_come_back_and_the_key_is_kept_only_when_asked(qtbot, isolated):
    dialog = make(qtbot)
    dialog.url.setText(" https://gpu.lab.example:8443/v1/ ")
    dialog.model.setCurrentText("vandijklab/C2S-Scale-Gemma-2-2B")
    dialog.api_key.setText("s3cret")
    dialog.ca_bundle.setText("/etc/lab-ca.pem")
    dialog.concurrency.setValue(4)
    dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Accepted
    opts = dialog.options()
    assert opts.url == "https://gpu.lab.example:8443"
    assert (opts.model, opts.api_key, opts.ca_bundle, opts.concurrency) == (
        "vandijklab/C2S-Scale-Gemma-2-2B",
        "s3cret",
        "/etc/lab-ca.pem",
        4,
    )
    assert QSettings().value("server/api_key") is None

    again = make(qtbot)
    assert again.url.text() == "https://gpu.lab.example:8443/v1/"
    assert again.concurrency.value() == 4 and again.api_key.text() == ""
    again.api_key.setText("s3cret")
    again.remember.setChecked(True)
    again.accept()
    third = make(qtbot)
    assert third.api_key.text() == "s3cret" and third.remember.isChecked()
    third.remember.setChecked(False)
    third.accept()
    assert QSettings().value("server/api_key") is None


def test_a_bad_address_keeps_the_dialog_open(qtbot, isolated):
    dialog = make(qtbot)
    dialog.url.setText("gpu-server:8000")
    dialog.accept()
    assert dialog.isVisible() and dialog.result() != QDialog.DialogCode.Accepted
    assert "is not a server address" in dialog.status.text()


def test_connection_test_lists_the_models_in_the_background(qtbot, isolated, demo_server):
    dialog = make(qtbot)
    dialog.url.setText(demo_server)
    dialog.test.click()
    qtbot.waitUntil(lambda: dialog.status.text().startswith("Connected"), timeout=20_000)
    assert ALIAS in dialog.status.text()
    assert dialog.model.currentText() == ALIAS
    # the demo model has no BOS: llama-cpp-python's prompt log-probabilities are shifted
    assert "Label scoring: " + ALIAS + ": approximate scoring" in dialog.status.text()
    check = dialog.last_check
    assert check is not None and not check.exact and check.seconds_per_cell > 0
    assert QSettings().value("server/seconds_per_cell") is not None
    qtbot.waitUntil(lambda: not dialog.runner.is_busy(), timeout=5_000)


def test_connection_test_shows_why_it_failed(qtbot, isolated):
    dialog = make(qtbot)
    url = f"http://127.0.0.1:{free_port()}"
    dialog.url.setText(url)
    dialog.test.click()
    qtbot.waitUntil(lambda: "cannot reach" in dialog.status.text(), timeout=30_000)
    assert "connection refused" in dialog.status.text() and dialog.test.isEnabled()
    qtbot.waitUntil(lambda: not dialog.runner.is_busy(), timeout=5_000)
