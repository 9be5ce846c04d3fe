"""Where each task's results go in an AnnData: the obs/obsm/uns keys and the provenance records.

The CLI, the window's export, the report and the session restore all use this mapping, so the
same task with the same options writes the same fields and the same ``uns['c2s']`` record from
either front end.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .export import UNS_KEY as UNS_KEY  # re-exported: every key of the mapping is here
from .export import full_column, provenance

if TYPE_CHECKING:
    from .tasks.annotate import AnnotateResult
    from .tasks.embed import EmbedResult
    from .tasks.generate import GenerateResult


CELL_TYPE = "c2s_cell_type"
CELL_TYPE_PROB = "c2s_cell_type_prob"
CLUSTER = "c2s_cluster"
"""obs column of the clusters representative annotation used."""
EMBEDDING = "X_c2s"
"""obsm: the C2S embedding (cells × hidden size)."""
LAYOUT = "X_c2s_2d"
"""obsm: a 2-D layout of the embedding."""
LAYOUT_COLUMNS = ("c2s_x", "c2s_y")
"""CSV columns of the 2-D layout."""

TASK_ANNOTATE = "annotate"
TASK_EMBED = "embed"
TASK_GENERATE = "generate"
TASK_ASSISTANT = "assistant"


@dataclass(frozen=True)
class ModelRecord:
    """The model that produced a result, as provenance names it."""

    name: str = ""
    sha256: str = ""
    adapter: str = ""
    """The LoRA adapter applied to the model (its path), "" when none."""
    adapter_sha256: str = ""

    @classmethod
    def of_server(cls, name: str, url: str) -> ModelRecord:
        """A model on a server: its address instead of a file hash."""
        return cls(f"{name} at {url}" if name else url, "")

    def fields(self) -> dict[str, str]:
        """Keyword arguments of :func:`~.export.provenance`."""
        return {"model_name": self.name, "model_sha256": self.sha256}


def option_parameters(options: object) -> dict[str, Any]:
    """An options dataclass as provenance parameters (cell rows left out: they are the data)."""
    if not dataclasses.is_dataclass(options) or isinstance(options, type):
        return {}
    values: dict[str, Any] = {}
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if f.name == "rows":
            continue
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        values[f.name] = list(value) if isinstance(value, tuple) else value
    return values


def options_from(cls: type, parameters: Mapping[str, Any]) -> Any:
    """The options dataclass ``cls`` back from :func:`option_parameters` (unknown keys dropped)."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in parameters.items():
        if key in names and key != "rows":
            values[key] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


# -- annotate ----------------------------------------------------------------------------------
def annotate_parameters(result: AnnotateResult) -> dict[str, Any]:
    """The options the annotation ran with, plus what it resolved (genes, cluster source,
    exact or approximate scoring)."""
    options = result.options
    if options is None:  # made without options (an older session): what the result knows
        params: dict[str, Any] = {"mode": result.mode, "candidates": list(result.candidates)}
    else:
        params = option_parameters(options)
    resolved = {
        "mode_used": result.mode,
        "n_genes": int(result.n_genes),
        "clusters": result.cluster_source,
    }
    return {**params, **resolved, "scoring": result.scoring}


def annotate_obs(result: AnnotateResult, n_cells: int) -> dict[str, Any]:
    """obs columns (every cell; missing where not annotated) of an annotation."""
    obs = {
        CELL_TYPE: full_column(n_cells, result.rows, result.labels, None),
        CELL_TYPE_PROB: full_column(n_cells, result.rows, result.probability, None),
    }
    if result.clusters is not None:
        clusters = np.asarray(result.clusters).astype(str)
        obs[CLUSTER] = full_column(n_cells, result.rows, clusters, None)
    return obs


# -- embed -------------------------------------------------------------------------------------
def embed_parameters(result: EmbedResult) -> dict[str, Any]:
    """The options the embedding ran with."""
    options = result.options
    return {} if options is None else option_parameters(options)


def embed_obsm(result: EmbedResult, n_cells: int) -> dict[str, np.ndarray]:
    """obsm arrays (every cell; NaN where not embedded) of an embedding."""
    return {
        EMBEDDING: full_column(n_cells, result.rows, result.embedding, None),
        LAYOUT: full_column(n_cells, result.rows, result.layout, None),
    }


# -- records -----------------------------------------------------------------------------------
def task_record(
    input_path: str | Path,
    task: str,
    model: ModelRecord,
    *,
    template_id: str = "",
    parameters: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The ``uns['c2s'][task]`` record of one result (input hashed, cached); the adapter's
    path and sha256 when one was applied."""
    record = provenance(
        input_path, task, template_id=template_id, parameters=parameters, **model.fields()
    )
    if model.adapter:
        record |= {"adapter": model.adapter, "adapter_sha256": model.adapter_sha256}
    return record


def annotate_record(
    input_path: str | Path, result: AnnotateResult, model: ModelRecord
) -> dict[str, str]:
    return task_record(
        input_path,
        TASK_ANNOTATE,
        model,
        template_id=result.template_id,
        parameters=annotate_parameters(result),
    )


def embed_record(input_path: str | Path, result: EmbedResult, model: ModelRecord) -> dict[str, str]:
    return task_record(
        input_path,
        TASK_EMBED,
        model,
        template_id=result.template_id,
        parameters=embed_parameters(result),
    )


def generate_record(
    reference: str | Path, result: GenerateResult, options: object, model: ModelRecord
) -> dict[str, str]:
    """The record stored with generated cells."""
    return task_record(
        reference,
        TASK_GENERATE,
        model,
        template_id=result.template_id,
        parameters=option_parameters(options),
    )
