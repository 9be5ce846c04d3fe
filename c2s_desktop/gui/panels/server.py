""" "Connect to a server": the address of an OpenAI-compatible inference server and how to
reach it, returned as :class:`~c2s_desktop.core.engine.remote.ServerOptions`.

"Test connection" lists the server's models in the background, checks whether it scores labels
exactly (prompt log-probabilities) or only approximately, and measures how long it takes per
cell; the rate is kept in QSettings (``server/seconds_per_cell``) for annotation estimates.
The API key is kept only when
the user ticks "Remember the API key" (then in QSettings, which is a plain file or registry
entry of this user); otherwise it lives as long as the dialog's result.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ...core.engine.base import EngineError
from ...core.engine.remote import (
    ServerCheck,
    ServerOptions,
    check_server,
    list_models,
    normalize_url,
)
from ..dialogs import error_text
from ..jobs import JobRunner

GROUP = "server"
MAX_CONCURRENCY = 32


def probe_server(options: ServerOptions) -> tuple[list[str], ServerCheck | None]:
    """The server's models and, when the model to use is known (given, or the only one),
    how it scores labels and at what rate."""
    models = list_models(options)
    if options.model is None and len(models) == 1:
        options = replace(options, model=models[0])
    if options.model is None or options.model not in models:
        return models, None
    return models, check_server(options)


class ServerDialog(QDialog):
    """Server address, model name, API key, CA bundle and concurrency; :meth:`options` after
    ``exec()`` returns ``Accepted``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Connect to a server")
        self.runner = JobRunner(self)
        self.url = QLineEdit(placeholderText="http://gpu-server:8000")
        self.model = QComboBox(editable=True)
        self.model.lineEdit().setPlaceholderText("the only model the server serves")
        self.api_key = QLineEdit(echoMode=QLineEdit.EchoMode.Password)
        self.api_key.setPlaceholderText("none")
        self.remember = QCheckBox("Remember the API key on this computer")
        self.ca_bundle = QLineEdit(placeholderText="system certificates")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.concurrency = QSpinBox(minimum=1, maximum=MAX_CONCURRENCY)
        self.concurrency.setToolTip("Requests in flight at once while annotating cells")
        self.test = QPushButton("Test connection")
        self.test.clicked.connect(self.test_connection)
        self.status = QLabel(wordWrap=True)
        self.last_check: ServerCheck | None = None

        ca_row = QHBoxLayout()
        ca_row.addWidget(self.ca_bundle)
        ca_row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Server address", self.url)
        form.addRow("Model name", self.model)
        form.addRow("API key", self.api_key)
        form.addRow("", self.remember)
        form.addRow("CA bundle", ca_row)
        form.addRow("Concurrent requests", self.concurrency)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.test)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)
        self._load()

    # -- result ----------------------------------------------------------------------------------
    def options(self) -> ServerOptions:
        """The settings as entered (raises :class:`EngineError` for a bad address)."""
        return ServerOptions(
            url=normalize_url(self.url.text()),
            model=self.model.currentText().strip() or None,
            api_key=self.api_key.text() or None,
            ca_bundle=self.ca_bundle.text().strip() or None,
            concurrency=self.concurrency.value(),
        )

    def accept(self) -> None:
        try:
            self.options()
        except EngineError as exc:
            self._show_error(exc)
            return
        self._save()
        super().accept()

    def done(self, result: int) -> None:
        self.runner.cancel()
        self.runner.wait()
        super().done(result)

    # -- connection test -------------------------------------------------------------------------
    def test_connection(self) -> None:
        """List the server's models in the background; the result shows under the button."""
        try:
            options = self.options()
        except EngineError as exc:
            self._show_error(exc)
            return
        self.test.setEnabled(False)
        self.status.setText(f"Connecting to {options.url}…")
        self.runner.start(
            "test", probe_server, options, on_success=self._found, on_failure=self._failed
        )

    def _found(self, found: tuple[list[str], ServerCheck | None]) -> None:
        models, check = found
        self.test.setEnabled(True)
        current = self.model.currentText()
        self.model.clear()
        self.model.addItems(models)
        self.model.setCurrentText(current if current in models or not models else models[0])
        names = ", ".join(models) or "none"
        lines = [f"Connected. Models found: {names}"]
        self.last_check = check
        if check is None:
            lines.append("Choose a model and test again to check its label scoring.")
        else:
            lines.append(f"Label scoring: {check.summary()}")
            s = QSettings()
            s.beginGroup(GROUP)
            s.setValue("seconds_per_cell", check.seconds_per_cell)
            s.setValue("exact_scoring", check.exact)
            s.endGroup()
        self.status.setText("\n".join(lines))

    def _failed(self, exc: BaseException) -> None:
        self.test.setEnabled(True)
        self._show_error(exc)

    def _show_error(self, exc: BaseException) -> None:
        text, hint = error_text(exc)
        self.status.setText(f"{text}\n{hint}" if hint else text)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "CA bundle", "", "Certificates (*.pem *.crt *.cer);;All files (*)"
        )
        if path:
            self.ca_bundle.setText(path)

    # -- settings --------------------------------------------------------------------------------
    def _load(self) -> None:
        s = QSettings()
        s.beginGroup(GROUP)
        self.url.setText(str(s.value("url", "")))
        self.model.setCurrentText(str(s.value("model", "")))
        self.ca_bundle.setText(str(s.value("ca_bundle", "")))
        self.concurrency.setValue(int(s.value("concurrency", 1)))
        remember = str(s.value("remember_key", "false")).lower() == "true"
        self.remember.setChecked(remember)
        if remember:
            self.api_key.setText(str(s.value("api_key", "")))
        s.endGroup()

    def _save(self) -> None:
        s = QSettings()
        s.beginGroup(GROUP)
        s.setValue("url", self.url.text().strip())
        s.setValue("model", self.model.currentText().strip())
        s.setValue("ca_bundle", self.ca_bundle.text().strip())
        s.setValue("concurrency", self.concurrency.value())
        s.setValue("remember_key", self.remember.isChecked())
        if self.remember.isChecked():
            s.setValue("api_key", self.api_key.text())
        else:
            s.remove("api_key")
        s.endGroup()
        s.sync()
