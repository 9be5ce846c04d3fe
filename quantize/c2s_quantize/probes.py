"""Verification prompts shipped with the package (``data/probes.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Probe:
    """A text to compare models on; ``labels`` are scored as continuations when present."""

    name: str
    text: str
    labels: tuple[str, ...] = ()
    expected: str = ""

    def continuation(self, label: str) -> str:
        """The answer text scored for ``label`` (the C2S response template is ``{cell_type}.``)."""
        return f" {label}."


@cache
def load_probes() -> tuple[Probe, ...]:
    """Cell-type prompts (one per shipped cell) followed by a few bare cell sentences."""
    data = json.loads(
        resources.files("c2s_quantize").joinpath("data/probes.json").read_text("utf-8")
    )
    labels = tuple(data["labels"])
    probes = [
        Probe(
            f"cell_type/{i}",
            data["template"].format(
                num_genes=len(cell["genes"]),
                organism=data["organism"],
                cell_sentence=" ".join(cell["genes"]),
            ),
            labels,
            cell["expected"],
        )
        for i, cell in enumerate(data["cells"])
    ]
    probes += [
        Probe(f"sentence/{i}", " ".join(data["cells"][i]["genes"])) for i in data["plain_sentences"]
    ]
    return tuple(probes)
