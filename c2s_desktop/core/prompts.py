"""Prompt templates the released C2S models were trained on, and the prompt builders.

Templates are the unmodified JSON files of cell2sentence 1.2.0 (``resources/prompts``, see its
README for source and licence). Template choice is deterministic: index 0 unless asked otherwise
(index 0 is also the C2S-Scale model cards' example). Answers are cut from generated tokens by
position by the engine; here we only build prompt text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from string import Formatter

from .errors import DataError
from .resources import resource_path

PROMPT_SOURCE = "cell2sentence-1.2.0"

CELL_TYPE_PREDICTION = "cell_type_prediction"
CELL_TYPE_GENERATION = "cell_type_generation"
TISSUE_PREDICTION = "tissue_prediction"
TISSUE_GENERATION = "tissue_generation"
NL_INTERPRETATION = "natural_language_interpretation"

TEMPLATE_FILES = {
    CELL_TYPE_PREDICTION: "single_cell_cell_type_prediction_prompts.json",
    CELL_TYPE_GENERATION: "single_cell_cell_type_conditional_generation_prompts.json",
    TISSUE_PREDICTION: "multi_cell_tissue_prediction_prompts.json",
    TISSUE_GENERATION: "multi_cell_tissue_conditional_generation.json",
    NL_INTERPRETATION: "multi_cell_natural_lang_interpretation_prompts.json",
}
PLACEHOLDERS = (
    "cell_sentence",
    "num_genes",
    "organism",
    "cell_type",
    "num_cells",
    "multi_cell_sentences",
    "tissue",
    "question",
)
_FIELD = re.compile(r"{([a-zA-Z_]+)}")


@dataclass(frozen=True)
class Template:
    """One prompt template: ``id`` names file and index (recorded in provenance)."""

    id: str
    task: str
    text: str
    response: str

    @property
    def fields(self) -> set[str]:
        return set(_FIELD.findall(self.text))

    def format(self, **values: object) -> str:
        """Fill the template; every placeholder it uses must be given."""
        missing = self.fields - set(values)
        if missing:
            raise DataError(f"template {self.id} needs {', '.join(sorted(missing))}")
        return self.text.format(**{k: values[k] for k in self.fields})


@cache
def templates(task: str) -> tuple[Template, ...]:
    """All paraphrases of a built-in task, in file order."""
    if task not in TEMPLATE_FILES:
        raise DataError(f"unknown prompt task '{task}'", hint=f"one of {', '.join(TEMPLATE_FILES)}")
    data = json.loads(resource_path("prompts", TEMPLATE_FILES[task]).read_text("utf-8"))
    return tuple(
        Template(f"{PROMPT_SOURCE}/{task}/{i}", task, text, data["response"][0])
        for i, text in enumerate(data["model_input"])
    )


def template(task: str, index: int = 0) -> Template:
    """The ``index``-th paraphrase of ``task`` (0 = the default, deterministic choice)."""
    options = templates(task)
    if not 0 <= index < len(options):
        raise DataError(f"{task} has templates 0..{len(options) - 1}, not {index}")
    return options[index]


def load_custom_template(path: str | Path) -> Template:
    """A user template file: plain text with the same ``{placeholders}`` as the built-in ones."""
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the template ({exc})", path=p) from exc
    try:
        names = {f for _, f, spec, conv in Formatter().parse(text) if f is not None}
    except ValueError as exc:  # unbalanced braces
        raise DataError(
            f"not a valid template ({exc})", path=p, hint="write literal braces as {{ and }}"
        ) from exc
    bad = {n for n in names if not n.isidentifier()}
    if bad or any(spec or conv for _, f, spec, conv in Formatter().parse(text) if f):
        raise DataError(
            f"unsupported placeholder(s) {', '.join(sorted(bad)) or 'with format'}",
            path=p,
            hint="use plain {name} placeholders; write literal braces as {{ and }}",
        )
    unknown = names - set(PLACEHOLDERS)
    if unknown:
        raise DataError(
            f"unknown placeholder(s) {', '.join('{' + u + '}' for u in sorted(unknown))}",
            path=p,
            hint=f"available: {', '.join('{' + f + '}' for f in PLACEHOLDERS)}",
        )
    return Template(f"custom/{p.name}", "custom", text.rstrip("\n"), "")


def sentence_words(sentence: str | Sequence[str], n_genes: int) -> str:
    """The first ``n_genes`` words of a cell sentence, space-separated."""
    words = sentence.split(" ") if isinstance(sentence, str) else list(sentence)
    return " ".join(w for w in words[:n_genes] if w)


def multi_cell_block(sentences: Sequence[str], n_genes: int) -> str:
    """``Cell 1:\\n<sentence>.\\nCell 2:...`` exactly as cell2sentence builds multi-cell input."""
    return "".join(
        f"Cell {i}:\n{sentence_words(s, n_genes)}.\n" for i, s in enumerate(sentences, start=1)
    )


def prompt_values(
    *,
    organism: str,
    n_genes: int,
    sentence: str | None = None,
    sentences: Sequence[str] | None = None,
    cell_type: str | None = None,
    tissue: str | None = None,
    question: str | None = None,
) -> dict[str, object]:
    """Placeholder values for any template (unused ones are ignored by :meth:`Template.format`)."""
    values: dict[str, object] = {"organism": organism, "num_genes": n_genes}
    if sentence is not None:
        values["cell_sentence"] = sentence_words(sentence, n_genes)
    if sentences is not None:
        values["multi_cell_sentences"] = multi_cell_block(sentences, n_genes)
        values["num_cells"] = len(sentences)
    for key, value in (("cell_type", cell_type), ("tissue", tissue), ("question", question)):
        if value is not None:
            values[key] = value
    return values


def clean_label(text: str) -> str:
    """A generated label as cell2sentence compares it: first line, stripped, one final '.' off."""
    line = text.strip().split("\n", 1)[0].strip()
    return line[:-1].rstrip() if line.endswith(".") else line


def label_continuation(label: str) -> str:
    """How a label follows the prompt in training: a space, the label, a period."""
    return f" {label}."
