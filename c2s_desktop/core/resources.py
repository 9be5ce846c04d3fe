"""Where bundled resources (gene tables, prompts, demo data) live at run time."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def resources_dir() -> Path:
    """The ``resources/`` folder: ``$C2S_RESOURCES``, the frozen bundle's copy, or the repo's."""
    env = os.environ.get("C2S_RESOURCES")
    if env:
        return Path(env)
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "resources"
    return Path(__file__).resolve().parents[2] / "resources"


def resource_path(*parts: str) -> Path:
    """Path of a file under the resources folder."""
    return resources_dir().joinpath(*parts)
