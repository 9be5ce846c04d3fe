"""What each C2S model was trained to do, so tasks can warn before asking for something else.

Facts come from the released models' cards (the catalogue shipped in ``c2s_quantize``); the task
names here are the app's own: ``annotate``, ``generate``, ``summarize``, ``ask``, ``embed``,
``tissue``. A model converted by c2s-quantize carries ``c2s.source_repo`` in its GGUF metadata.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

ANNOTATE = "annotate"
GENERATE = "generate"
SUMMARIZE = "summarize"
ASK = "ask"
EMBED = "embed"
TISSUE = "tissue"
ALL_TASKS = (ANNOTATE, GENERATE, SUMMARIZE, ASK, EMBED, TISSUE)

DEFAULT_GENES = 200
DEMO_MODEL = "c2s-desktop/demo-pbmc-tiny"
"""The demo model shipped in resources/demo (trained here on 700 PBMCs; not a released model)."""
_DEMO_TASKS = (frozenset({ANNOTATE, GENERATE, EMBED}), 200)


@functools.cache
def model_tasks() -> dict[str, tuple[frozenset[str], int]]:
    """Hub repo → (app tasks, genes per cell sentence) of every known model.

    The released models' entries are read from c2s-quantize's catalogue (its ``app_tasks`` and
    ``app_n_genes``), so each model's task list has one home; the demo model is the app's own.
    """
    try:
        from c2s_quantize.catalog import load_catalog
    except ImportError:  # the converter is not installed: only the demo model is known
        entries = ()
    else:
        entries = load_catalog()
    known = {
        e.hf_repo: (frozenset(e.app_tasks), e.n_genes or DEFAULT_GENES)
        for e in entries
        if e.app_tasks
    }
    return {**known, DEMO_MODEL: _DEMO_TASKS}


def __getattr__(name: str) -> object:
    # ``MODEL_TASKS`` reads the catalogue file on first use, not when the module is imported.
    if name == "MODEL_TASKS":
        return model_tasks()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Capabilities:
    """What a model can be asked, and how many genes its cell sentences should hold."""

    model: str
    tasks: frozenset[str]
    n_genes: int
    known: bool

    def warning_for(self, task: str) -> str:
        """Empty when ``task`` is supported; otherwise a warning naming models that can do it."""
        if task in self.tasks:
            return ""
        able = [repo for repo, (tasks, _) in model_tasks().items() if task in tasks]
        return (
            f"{self.model or 'this model'} was not trained for '{task}'; answers may be "
            f"meaningless. Models trained for it: {', '.join(able) or 'none known'}"
        )


def capabilities(metadata: dict[str, object]) -> Capabilities:
    """Capabilities from GGUF ``c2s.*`` metadata (``source_repo``, ``tasks``, ``n_genes``)."""
    repo = str(metadata.get("c2s.source_repo") or metadata.get("source_repo") or "")
    declared = metadata.get("c2s.app_tasks")
    n_genes = int(metadata.get("c2s.n_genes") or 0)  # type: ignore[call-overload]
    if declared:
        tasks = frozenset(str(t) for t in declared)  # type: ignore[union-attr]
        return Capabilities(repo or "demo model", tasks, n_genes or DEFAULT_GENES, True)
    entry = next((v for k, v in model_tasks().items() if k.lower() == repo.lower()), None)
    if entry:
        return Capabilities(repo, entry[0], n_genes or entry[1], True)
    return Capabilities(repo, frozenset(ALL_TASKS), n_genes or DEFAULT_GENES, False)
