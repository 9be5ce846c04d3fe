"""Export of a session's results: the annotated copy, the per-cell CSV and the HTML report.

:class:`ExportContent` is what a session holds (results, conversations, generated cells);
:func:`write_exports` writes the chosen outputs with the fields and records of :mod:`.results`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DataError, OutputError
from .export import write_annotated_copy, write_table_csv
from .progress import CancelToken, ProgressFn, check_cancel, no_progress
from .results import (
    LAYOUT,
    LAYOUT_COLUMNS,
    TASK_ASSISTANT,
    TASK_GENERATE,
    ModelRecord,
    annotate_obs,
    annotate_record,
    embed_obsm,
    embed_record,
    task_record,
)

if TYPE_CHECKING:
    from .dataset import Dataset
    from .session import Conversation, GeneratedSet
    from .tasks.annotate import AnnotateResult
    from .tasks.embed import EmbedResult

KINDS = ("h5ad", "csv", "report")
"""The outputs :func:`write_exports` can write."""


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same file (the second need not exist)."""
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


@dataclass
class ExportContent:
    """Everything a session holds that can be exported."""

    input_path: Path
    cell_ids: np.ndarray
    selection: np.ndarray
    embedding_name: str = ""
    annotate: AnnotateResult | None = None
    embed: EmbedResult | None = None
    conversations: list[Conversation] = field(default_factory=list)
    generated: list[GeneratedSet] = field(default_factory=list)
    model: ModelRecord = ModelRecord()

    @property
    def n_cells(self) -> int:
        return len(self.cell_ids)

    def describe(self) -> str:
        """What will be exported, in one line per kind."""
        lines = []
        if self.annotate is not None:
            lines.append(f"cell types for {len(self.annotate.rows):,} cells ({self.annotate.mode})")
        if self.embed is not None:
            lines.append(f"C2S embedding of {len(self.embed.rows):,} cells")
        answers = sum(len(c.turns) for c in self.conversations)
        if answers:
            lines.append(
                f"{answers} summaries/answers in {len(self.conversations)} conversation(s)"
            )
        cells = sum(len(g.sentences) for g in self.generated)
        if cells:
            lines.append(f"{cells} generated cells (sentences)")
        lines.append(f"current selection: {len(self.selection):,} cells")
        return "\n".join(lines)


def result_columns(content: ExportContent) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Per-cell obs columns and obsm arrays covering every cell."""
    obs: dict[str, Any] = {}
    obsm: dict[str, np.ndarray] = {}
    if content.annotate is not None:
        obs.update(annotate_obs(content.annotate, content.n_cells))
    if content.embed is not None:
        obsm.update(embed_obsm(content.embed, content.n_cells))
    return obs, obsm


def uns_records(content: ExportContent) -> dict[str, dict[str, str]]:
    """Provenance records for ``uns['c2s']`` (the input is hashed once, then cached)."""
    path, model = content.input_path, content.model
    records: dict[str, dict[str, str]] = {}
    if content.annotate is not None:
        records["annotate"] = annotate_record(path, content.annotate, model)
    if content.embed is not None:
        records["embed"] = embed_record(path, content.embed, model)
    turns = [t for c in content.conversations for t in c.turns]
    if turns:
        template_ids = ", ".join(sorted({t.template_id for t in turns}))
        rec = task_record(path, TASK_ASSISTANT, model, template_id=template_ids)
        rec["conversations"] = json.dumps(
            [asdict(c) for c in content.conversations if c.turns], ensure_ascii=False
        )
        records[TASK_ASSISTANT] = rec
    if content.generated:
        sets = [{"cell_type": g.cell_type, **g.parameters} for g in content.generated]
        rec = task_record(path, TASK_GENERATE, model, parameters={"sets": sets})
        rec["sentences"] = json.dumps([s for g in content.generated for s in g.sentences])
        records[TASK_GENERATE] = rec
    return records


def csv_columns(
    content: ExportContent, obs: Mapping[str, Any], obsm: Mapping[str, np.ndarray] | None = None
) -> dict[str, Sequence[Any]]:
    """``cell_id``, selection membership, each per-cell result and the 2-D layout."""
    selected = np.zeros(content.n_cells, dtype=np.int8)
    selected[content.selection] = 1
    columns: dict[str, Sequence[Any]] = {"cell_id": content.cell_ids, "selected": selected}
    for name, values in obs.items():
        columns[name] = np.asarray(values, dtype=object)
    layout = (obsm or {}).get(LAYOUT)
    if layout is None and content.embed is not None:
        layout = embed_obsm(content.embed, content.n_cells)[LAYOUT]
    if layout is not None:
        columns[LAYOUT_COLUMNS[0]], columns[LAYOUT_COLUMNS[1]] = layout[:, 0], layout[:, 1]
    return columns


def write_exports(
    content: ExportContent,
    targets: Mapping[str, Path],
    overwrite: bool,
    plot_embedding: np.ndarray | None = None,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
    dataset: Dataset | None = None,
) -> list[Path]:
    """Write the chosen outputs (``targets`` keys: h5ad, csv, report); returns their paths.

    With the open ``dataset``, the report also shows its labels, QC and marker dot plots."""
    if not targets:
        raise DataError("nothing chosen to export", hint="tick at least one output")
    for path in targets.values():
        if same_file(path, content.input_path):
            raise OutputError("is the input file", path=path, hint="choose another output name")
    progress(0.0, "export: hashing the input (provenance)")
    records = uns_records(content)
    obs, obsm = result_columns(content)
    written: list[Path] = []
    if "h5ad" in targets:
        check_cancel(cancel)
        progress(0.2, "export: writing the annotated copy")
        written.append(
            write_annotated_copy(
                content.input_path,
                targets["h5ad"],
                obs=obs,
                obsm=obsm,
                uns=records,
                overwrite=overwrite,
            )
        )
    if "csv" in targets:
        check_cancel(cancel)
        progress(0.6, "export: writing the CSV")
        written.append(
            write_table_csv(targets["csv"], csv_columns(content, obs, obsm), overwrite=overwrite)
        )
    if "report" in targets:
        import pandas as pd

        from .report import render_results, write_html

        check_cancel(cancel)
        progress(0.8, "export: writing the report")
        frame = pd.DataFrame(obs, index=pd.Index(content.cell_ids.astype(str)))
        figures = dict(obsm)
        if plot_embedding is not None and content.embedding_name:
            figures = {content.embedding_name: plot_embedding, **figures}
        html_text = render_results(
            content.input_path.name, frame, figures, records, dataset=dataset, cancel=cancel
        )
        written.append(write_html(html_text, targets["report"], overwrite=overwrite))
    progress(1.0, "export: done")
    return written


def export_job(
    content: ExportContent,
    targets: Mapping[str, Path],
    overwrite: bool,
    dataset: Dataset | None,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> list[Path]:
    """:func:`write_exports` with the report's plot of the open dataset's chosen embedding."""
    xy = None
    if dataset is not None and content.embedding_name and "report" in targets:
        xy = dataset.embedding(content.embedding_name)
    return write_exports(
        content, targets, overwrite, xy, progress=progress, cancel=cancel, dataset=dataset
    )
