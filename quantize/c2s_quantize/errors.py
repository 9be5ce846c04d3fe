"""User-facing errors: what is wrong, where, and what to do about it."""

from __future__ import annotations

import os
from pathlib import Path


class QuantizeError(Exception):
    """A problem the user can fix.

    ``message`` says what is wrong, ``hint`` what to do, ``path`` (optional) which file or folder
    it concerns. The CLI prints ``error: <path>: <message> — <hint>`` and exits with status 2.
    """

    def __init__(
        self, message: str, hint: str = "", path: str | os.PathLike[str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.path = Path(path) if path is not None else None

    def one_line(self) -> str:
        """The error on one line, newlines folded, as the CLI prints it (without ``error:``)."""
        parts = [f"{self.path}: {self.message}" if self.path else self.message]
        if self.hint:
            parts.append(self.hint)
        return " — ".join(" ".join(p.split()) for p in parts)

    def __str__(self) -> str:
        return self.one_line()


class Cancelled(QuantizeError):
    """The caller's cancel token was set; any partial output has been removed."""

    def __init__(self) -> None:
        super().__init__("cancelled", "nothing was written")
