"""Which quantization type to use on this machine, measured rather than looked up.

For the installed variants (types) of one source model, a short on-device run scores a standard
per-cell prompt (real demo PBMC cells, the cell-type template, ``n_labels`` candidate labels) in
the model process with the app's default engine options, and times it. The recommendation is
the fastest variant whose predicted labels agree with those of the most precise variant (the
largest file) on enough of the cells. Results are cached per CPU variant, llama.cpp build,
options and file sha256, so the model manager shows them again without measuring.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write
from .engine.base import EngineOptions, ModelInfo
from .errors import C2SError
from .models import validate_gguf
from .progress import CancelToken, ProgressFn, check_cancel, no_progress
from .prompts import label_continuation, prompt_values, template
from .resources import resource_path

log = logging.getLogger(__name__)

CACHE_FILE = "type-recommendation.json"
DEMO_DATA = ("demo", "pbmc_demo.h5ad")
N_GENES = 200
LABELS = (
    "CD4-positive, alpha-beta T cell",
    "CD8-positive, alpha-beta T cell",
    "B cell",
    "natural killer cell",
    "CD14-positive monocyte",
    "CD16-positive monocyte",
    "platelet",
    "plasmacytoid dendritic cell",
    "conventional dendritic cell",
    "erythrocyte",
)


class RecommendError(C2SError):
    """The files cannot be compared (not variants of one model, none given)."""


@dataclass(frozen=True)
class TypeMeasurement:
    """One variant measured: seconds per cell and its labels' agreement with the reference."""

    path: str
    quant: str
    size_bytes: int
    sha256: str
    seconds_per_cell: float
    labels: tuple[str, ...]
    """The top label of each measured cell."""
    agreement: float = 1.0
    """Share of cells whose top label equals the reference variant's."""


@dataclass(frozen=True)
class Recommendation:
    """The measured variants (most precise first) and the one to use."""

    measurements: tuple[TypeMeasurement, ...]
    choice: str  # path of the recommended variant
    cpu: str  # the CPU kernels measured with, e.g. "CPU · zen4 / AVX-512 VNNI BF16"
    n_cells: int
    n_labels: int
    min_agreement: float
    cached: bool = False

    @property
    def reference(self) -> TypeMeasurement:
        return self.measurements[0]

    @property
    def chosen(self) -> TypeMeasurement:
        return next(m for m in self.measurements if m.path == self.choice)

    def acceptable(self, m: TypeMeasurement) -> bool:
        return m.agreement >= self.min_agreement

    def summary(self) -> str:
        """``Q4_0: 0.52 s/cell, 1.9x the speed of Q8_0, same labels on 3/3 cells (CPU · zen4)``."""
        c, ref = self.chosen, self.reference
        same = round(c.agreement * self.n_cells)
        versus = (
            f", {ref.seconds_per_cell / c.seconds_per_cell:.1f}x the speed of {ref.quant}, "
            f"same labels on {same}/{self.n_cells} cells"
            if c is not ref
            else f", the most precise of {len(self.measurements)} measured"
        )
        return f"{c.quant}: {c.seconds_per_cell:.2f} s/cell{versus} ({self.cpu})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recommendation:
        ms = tuple(
            TypeMeasurement(**{**m, "labels": tuple(m["labels"])}) for m in data["measurements"]
        )
        return cls(**{**data, "measurements": ms})


def variants_of(path: str | Path, candidates: Sequence[Path]) -> list[Path]:
    """``path`` and those of ``candidates`` that are the same model in another type (same
    source and shape), most precise (largest) first; invalid files are left out."""
    info = validate_gguf(path)
    out = {Path(path).resolve(): info}
    for other in candidates:
        try:
            o = validate_gguf(other)
        except C2SError:
            continue
        if _identity(o) == _identity(info):
            out.setdefault(Path(other).resolve(), o)
    return sorted(out, key=lambda p: -out[p].size_bytes)


def _identity(info: ModelInfo) -> tuple[object, ...]:
    meta = info.metadata
    source = meta.get("c2s.source_repo") or meta.get("c2s.source_folder") or info.name
    return (source, info.architecture, info.n_layer, info.n_embd, info.n_vocab)


def recommend_type(
    paths: Sequence[str | Path],
    *,
    n_cells: int = 3,
    n_labels: int = 10,
    reps: int = 1,
    min_agreement: float = 1.0,
    options: EngineOptions | None = None,
    use_cache: bool = True,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> Recommendation:
    """Measure each variant of one model (``paths``) and recommend the fastest acceptable one.

    Each variant is loaded in the model process (:class:`.engine.process.ProcessEngine`), warmed
    up on one cell, then ``n_cells`` cells are scored ``reps`` times (each cell's best time
    counts). The most precise variant (largest file) is the reference for label agreement.
    """
    from .engine.backend import backend_info
    from .model_store import cached_sha256

    if not paths:
        raise RecommendError("no model files to compare", hint="install a model first")
    if not 1 <= n_labels <= len(LABELS) or n_cells < 1 or reps < 1 or not 0 <= min_agreement <= 1:
        raise RecommendError(
            f"measure 1..{len(LABELS)} labels, at least one cell and one rep, and an agreement "
            "between 0 and 1",
            hint=f"got {n_labels} labels, {n_cells} cells, {reps} reps, {min_agreement}",
        )
    infos = {Path(p): validate_gguf(p) for p in paths}
    if len({_identity(i) for i in infos.values()}) > 1:
        raise RecommendError(
            "these files are not one model in different types (source or shape differ)",
            path=next(iter(infos)),
            hint="compare variants of one source model",
        )
    ordered = sorted(infos, key=lambda p: -infos[p].size_bytes)
    options = options or EngineOptions()
    cpu = backend_info().cpu_label
    progress(0.0, "hashing the model files")
    hashes = [cached_sha256(p) for p in ordered]
    key = _cache_key(cpu, hashes, options, n_cells, n_labels, reps, min_agreement)
    if use_cache:
        hit = _read_cache().get(key)
        if hit is not None:
            try:
                return replace(Recommendation.from_dict(hit), cached=True)
            except (KeyError, TypeError, ValueError):
                log.warning("ignoring a malformed cached recommendation")
    labels = LABELS[:n_labels]
    measured = []
    for i, (path, digest) in enumerate(zip(ordered, hashes, strict=True)):
        check_cancel(cancel)
        progress(i / len(ordered), f"measuring {infos[path].file_type} ({path.name})")
        seconds, top = _measure(path, options, labels, n_cells, reps, cancel)
        measured.append(
            TypeMeasurement(
                str(path), infos[path].file_type, infos[path].size_bytes, digest, seconds, top
            )
        )
    ref = measured[0].labels
    measured = [
        replace(m, agreement=float(np.mean([a == b for a, b in zip(m.labels, ref, strict=True)])))
        for m in measured
    ]
    ok = [m for m in measured if m.agreement >= min_agreement]  # the reference always is
    best = min(ok, key=lambda m: m.seconds_per_cell)
    result = Recommendation(tuple(measured), best.path, cpu, n_cells, n_labels, min_agreement)
    _remember(key, result)
    progress(1.0, f"recommended {best.quant}")
    return result


def _measure(
    path: Path,
    options: EngineOptions,
    labels: Sequence[str],
    n_cells: int,
    reps: int,
    cancel: CancelToken | None,
) -> tuple[float, tuple[str, ...]]:
    """Mean over cells of each cell's best scoring time, and each cell's top label."""
    from .engine.process import ProcessEngine
    from .tasks.common import CellPromptFitter

    continuations = [label_continuation(label) for label in labels]
    tmpl = template("cell_type_prediction")

    def build(sentence: str, n: int) -> str:
        values = prompt_values(organism="Homo sapiens", n_genes=n, sentence=sentence)
        return tmpl.format(**values)

    n_ctx_train = validate_gguf(path).n_ctx_train
    options = replace(options, n_ctx=min(options.n_ctx, n_ctx_train or options.n_ctx))
    with ProcessEngine(path, options) as engine:
        reserve = max(len(engine.tokenize(c)) for c in continuations) + 8
        fitter = CellPromptFitter(engine, build, N_GENES, reserve)
        prompts = [fitter(s) for s in demo_sentences(n_cells)]
        engine.score(prompts[0], continuations, cancel=cancel)  # warm-up: repacking, threads
        best = [float("inf")] * n_cells
        top: list[str] = []
        for rep in range(reps):
            for i, prompt in enumerate(prompts):
                check_cancel(cancel)
                start = time.perf_counter()
                scores = engine.score(prompt, continuations, cancel=cancel)
                best[i] = min(best[i], time.perf_counter() - start)
                if rep == 0:
                    top.append(labels[int(np.argmax([s.logprob for s in scores]))])
    return float(np.mean(best)), tuple(top)


@cache
def demo_sentences(n_cells: int) -> tuple[str, ...]:
    """Cell sentences (genes by falling expression) of the first cells of each demo cell type."""
    import anndata

    adata = anndata.read_h5ad(resource_path(*DEMO_DATA))
    kinds = adata.obs["cell_type"].astype(str).to_numpy() if "cell_type" in adata.obs else None
    rows: list[int] = []
    if kinds is not None:  # one cell of each type in turn, for varied prompts
        firsts = [int(np.flatnonzero(kinds == k)[0]) for k in dict.fromkeys(kinds)]
        rows = firsts[:n_cells]
    rows += [r for r in range(adata.n_obs) if r not in rows][: n_cells - len(rows)]
    genes = adata.var_names.to_numpy()
    out = []
    for r in rows:
        x = adata.X[r]
        x = np.asarray(x.todense() if hasattr(x, "todense") else x).ravel()
        order = np.argsort(-x, kind="stable")
        out.append(" ".join(str(g) for g in genes[order][x[order] > 0][:N_GENES]))
    return tuple(out)


# -- the cache -------------------------------------------------------------------------------------
def _cache_key(
    cpu: str,
    hashes: Sequence[str],
    options: EngineOptions,
    n_cells: int,
    n_labels: int,
    reps: int,
    min_agreement: float,
) -> str:
    """CPU variant + build (its modules, this CPU's flags) + files + what was measured."""
    import llama_cpp

    from .engine.cpu_variants import cache_key, module_files

    parts = [
        cpu,
        str(getattr(llama_cpp, "__version__", "")),
        cache_key(module_files()),
        *sorted(hashes),
        f"{options.threads}/{options.n_batch}/{options.flash_attn}/{options.n_ctx}",
        f"{n_cells}/{n_labels}/{reps}/{min_agreement}",
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def cache_path() -> Path:
    from .inspect_child import cache_dir

    return cache_dir() / CACHE_FILE


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads(cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember(key: str, result: Recommendation) -> None:
    data = _read_cache()
    data[key] = result.to_dict()
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as fh:
            fh.write(json.dumps(data, indent=1).encode("utf-8"))
    except OSError as exc:  # a read-only cache only costs a new measurement next time
        log.warning("could not remember the recommendation in %s: %s", path, exc)
