"""The GUI fixtures (a real main window with throw-away settings) for the GUI corpus test."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from tests.gui.conftest import isolated, make_window, window  # noqa: E402, F401
