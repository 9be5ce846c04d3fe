"""User-facing errors: what is wrong, with which file, and what to do about it.

Every error a user can cause (bad file, bad option) is a :class:`C2SError`. The CLI prints it on
one line and exits with code 2; the GUI shows it in a dialog. Tracebacks never reach the user.
"""

from __future__ import annotations

from pathlib import Path


class C2SError(Exception):
    """An error the user can act on.

    ``message`` says what is wrong, ``path`` names the file involved (if any) and ``hint`` says
    what to do.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, hint: str = "") -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """The message as one line: ``FILE: problem. Hint``."""
        text = f"{self.path}: {self.message}" if self.path else self.message
        if self.hint:
            text = f"{text} — {self.hint}"
        return " ".join(text.split())


class InputFileError(C2SError):
    """An input file is missing, unreadable, corrupt or not the expected format."""


class DataError(C2SError):
    """The data can be read but cannot be used as asked (negative values, no symbols, ...)."""


class OutputError(C2SError):
    """An output cannot be written (unwritable folder, existing file, no space)."""


class Cancelled(Exception):  # noqa: N818 - a control-flow signal, not a failure
    """Raised inside long work when the user cancelled it."""
