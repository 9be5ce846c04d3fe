"""The catalogue of released C2S models shipped with the package (``data/catalog.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class ModelEntry:
    """One released model: where it lives, its licence and how to prompt it."""

    hf_repo: str
    architecture: str
    license: str
    license_note: str
    prompt_family: str
    tasks: tuple[str, ...]
    """What the model card says it was trained for (free text)."""
    app_tasks: tuple[str, ...]
    """The same in C2S Desktop's task names (``annotate``, ``generate``, ``embed``, ...)."""
    n_genes: int | None
    """Genes per cell sentence to use by default (None: not recorded)."""
    raw: dict[str, Any]  # the full catalogue record (sizes, tokenizer facts, ...)


@cache
def load_catalog() -> tuple[ModelEntry, ...]:
    """All catalogue entries, in catalogue order."""
    text = resources.files("c2s_quantize").joinpath("data/catalog.json").read_text("utf-8")
    return tuple(
        ModelEntry(
            hf_repo=m["hf_repo"],
            architecture=m["architecture"],
            license=m.get("license") or "unknown",
            license_note=m.get("license_note") or "",
            prompt_family=m.get("prompt_family") or "",
            tasks=tuple(m.get("trained_tasks") or ()),
            app_tasks=tuple(m.get("app_tasks") or ()),
            n_genes=m.get("app_n_genes"),
            raw=m,
        )
        for m in json.loads(text)["models"]
    )


def find_model(repo_id: str) -> ModelEntry | None:
    """The entry for a hub repo id (case-insensitive), or None."""
    key = repo_id.strip().lower()
    return next((m for m in load_catalog() if m.hf_repo.lower() == key), None)
