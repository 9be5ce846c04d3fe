"""What each C2S model was trained to do, so tasks can warn before asking for something else.

Facts come from the released models' cards (the catalogue shipped in ``c2s_quantize``); the task
names here are the app's own: ``annotate``, ``generate``, ``summarize``, ``ask``, ``embed``,
``tissue``. A model converted by c2s-quantize carries ``c2s.source_repo`` in its GGUF metadata.
"""

from __future__ import annotations

from dataclasses import dataclass

ANNOTATE = "annotate"
GENERATE = "generate"
SUMMARIZE = "summarize"
ASK = "ask"
EMBED = "embed"
TISSUE = "tissue"
ALL_TASKS = (ANNOTATE, GENERATE, SUMMARIZE, ASK, EMBED, TISSUE)

# hub repo → (tasks, genes per cell sentence it was trained with)
MODEL_TASKS: dict[str, tuple[frozenset[str], int]] = {
    "vandijklab/C2S-Pythia-410m-cell-type-prediction": (frozenset({ANNOTATE, EMBED}), 200),
    "vandijklab/C2S-Pythia-410m-cell-type-conditioned-cell-generation": (
        frozenset({GENERATE, EMBED}),
        200,
    ),
    "vandijklab/C2S-Pythia-410m-diverse-single-and-multi-cell-tasks": (
        frozenset({ANNOTATE, GENERATE, TISSUE, EMBED}),
        200,
    ),
    "vandijklab/pythia-160m-c2s": (frozenset({ANNOTATE, GENERATE, EMBED}), 100),
    "vandijklab/C2S-Scale-Pythia-1b-pt": (
        frozenset({ANNOTATE, GENERATE, TISSUE, SUMMARIZE, ASK, EMBED}),
        200,
    ),
    "vandijklab/C2S-Scale-Gemma-2-2B": (
        frozenset({ANNOTATE, GENERATE, TISSUE, SUMMARIZE, ASK, EMBED}),
        1000,
    ),
    "vandijklab/C2S-Scale-Gemma-2-27B": (
        frozenset({ANNOTATE, GENERATE, TISSUE, SUMMARIZE, ASK, EMBED}),
        1000,
    ),
    # The demo model shipped in resources/demo (trained here on 700 PBMCs; not C2S-Scale).
    "c2s-desktop/demo-pbmc-tiny": (frozenset({ANNOTATE, GENERATE, EMBED}), 200),
}
DEFAULT_GENES = 200


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
        able = [repo for repo, (tasks, _) in MODEL_TASKS.items() if task in tasks]
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
    entry = next((v for k, v in MODEL_TASKS.items() if k.lower() == repo.lower()), None)
    if entry:
        return Capabilities(repo, entry[0], n_genes or entry[1], True)
    return Capabilities(repo, frozenset(ALL_TASKS), n_genes or DEFAULT_GENES, False)
