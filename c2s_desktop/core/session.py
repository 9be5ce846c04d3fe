"""The autosaved session of one dataset: selections, results, conversations, generated cells.

One session per dataset lives in the app's data folder (:func:`~.selection.session_file`, keyed
by the dataset's path, size and modification time), never beside the input. The JSON document
extends the selections-only format of :mod:`.selection` (same ``selections`` key, ``version``
raised to 2); per-cell arrays (annotation labels and probabilities, embeddings) go to an ``.npz``
of the same name. Both are written atomically; a damaged file is renamed aside, never fatal.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write
from .errors import DataError, InputFileError
from .results import option_parameters, options_from
from .selection import as_rows
from .tasks.annotate import AnnotateOptions, AnnotateResult
from .tasks.embed import EmbedOptions, EmbedResult

SESSION_VERSION = 2
KIND_SUMMARY = "summary"
KIND_QUESTION = "question"
STATUS_DONE = "done"
STATUS_STOPPED = "stopped"
STATUS_FAILED = "failed"


def now_text() -> str:
    """UTC time as ISO 8601 text (seconds)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def rows_key(rows: np.ndarray) -> str:
    """A short stable key of a selection (its sorted unique rows)."""
    data = as_rows(rows).astype("<i8").tobytes()
    return hashlib.sha1(data).hexdigest()[:12]


@dataclass
class Turn:
    """One assistant exchange: a summary or a question with its answer and evidence."""

    kind: str
    question: str
    answer: str
    status: str = STATUS_DONE
    prompt: str = ""
    template_id: str = ""
    model: str = ""
    model_sha256: str = ""
    markers: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    time: str = field(default_factory=now_text)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Turn:
        return cls(
            kind=str(doc["kind"]),
            question=str(doc.get("question", "")),
            answer=str(doc.get("answer", "")),
            status=str(doc.get("status", STATUS_DONE)),
            prompt=str(doc.get("prompt", "")),
            template_id=str(doc.get("template_id", "")),
            model=str(doc.get("model", "")),
            model_sha256=str(doc.get("model_sha256", "")),
            markers=[str(m) for m in doc.get("markers", [])],
            warnings=[str(w) for w in doc.get("warnings", [])],
            time=str(doc.get("time", "")),
        )


@dataclass
class Conversation:
    """The turns about one selection (``key`` = :func:`rows_key` of its rows)."""

    key: str
    title: str
    n_cells: int
    turns: list[Turn] = field(default_factory=list)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Conversation:
        return cls(
            str(doc["key"]),
            str(doc.get("title", "")),
            int(doc.get("n_cells", 0)),
            [Turn.from_dict(t) for t in doc.get("turns", [])],
        )


@dataclass
class GeneratedSet:
    """Generated cells kept in the session (sentences only; expression is recomputed)."""

    cell_type: str
    sentences: list[str]
    parameters: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    time: str = field(default_factory=now_text)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> GeneratedSet:
        return cls(
            str(doc["cell_type"]),
            [str(s) for s in doc.get("sentences", [])],
            dict(doc.get("parameters", {})),
            str(doc.get("model", "")),
            str(doc.get("time", "")),
        )


@dataclass
class SessionState:
    """Everything the window restores for a dataset of ``n_cells`` cells."""

    n_cells: int
    data_path: str = ""
    selections: dict[str, np.ndarray] = field(default_factory=dict)
    current: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    conversations: dict[str, Conversation] = field(default_factory=dict)
    generated: list[GeneratedSet] = field(default_factory=list)
    annotate: AnnotateResult | None = None
    embed: EmbedResult | None = None
    cluster_source: str = ""
    """The obs column whose clusters were renamed (e.g. ``leiden``)."""
    cluster_names: dict[str, str] = field(default_factory=dict)
    """Cluster id → the user's name for it."""

    def is_empty(self) -> bool:
        return not (
            self.cluster_names
            or self.selections
            or len(self.current)
            or self.conversations
            or self.generated
            or self.annotate is not None
            or self.embed is not None
        )


def arrays_file(path: str | Path) -> Path:
    """The ``.npz`` beside a session JSON."""
    return Path(path).with_suffix(".npz")


# -- writing ---------------------------------------------------------------------------------
def _annotate_doc(r: AnnotateResult) -> dict[str, Any]:
    return {
        "candidates": list(r.candidates),
        "mode": r.mode,
        "cluster_agreement": {str(k): float(v) for k, v in r.cluster_agreement.items()},
        "template_id": r.template_id,
        "n_genes": int(r.n_genes),
        "seconds_per_scored_cell": float(r.seconds_per_scored_cell),
        "warnings": list(r.warnings),
        "has_clusters": r.clusters is not None,
        "cluster_source": r.cluster_source,
        "scoring": r.scoring,
        "options": None if r.options is None else option_parameters(r.options),
    }


def _annotate_arrays(r: AnnotateResult) -> dict[str, np.ndarray]:
    out = {
        "annotate_rows": np.asarray(r.rows, np.int64),
        "annotate_labels": np.asarray(r.labels).astype(str),
        "annotate_probability": np.asarray(r.probability, np.float32),
        "annotate_scored_rows": np.asarray(r.scored_rows, np.int64),
        "annotate_scored_probs": np.asarray(r.scored_probs, np.float32),
    }
    if r.clusters is not None:
        out["annotate_clusters"] = np.asarray(r.clusters).astype(str)
    return out


def _embed_arrays(r: EmbedResult) -> dict[str, np.ndarray]:
    return {
        "embed_rows": np.asarray(r.rows, np.int64),
        "embed_embedding": np.asarray(r.embedding, np.float32),
        "embed_layout": np.asarray(r.layout, np.float32),
    }


def session_document(state: SessionState) -> dict[str, Any]:
    """The JSON document of ``state`` (arrays excluded)."""
    results: dict[str, Any] = {}
    if state.annotate is not None:
        results["annotate"] = _annotate_doc(state.annotate)
    if state.embed is not None:
        e = state.embed
        results["embed"] = {
            "template_id": e.template_id,
            "warnings": list(e.warnings),
            "options": None if e.options is None else option_parameters(e.options),
        }
    return {
        "version": SESSION_VERSION,
        "data": state.data_path,
        "n_cells": state.n_cells,
        "saved_at": now_text(),
        "selections": {name: as_rows(rows).tolist() for name, rows in state.selections.items()},
        "current": as_rows(state.current).tolist(),
        "conversations": [asdict(c) for c in state.conversations.values()],
        "generated": [asdict(g) for g in state.generated],
        "results": results,
        "cluster_names": {"source": state.cluster_source, "names": dict(state.cluster_names)},
    }


def save_session(path: str | Path, state: SessionState, *, arrays: bool = True) -> Path:
    """Write ``state`` to ``path`` (JSON) and its arrays to the ``.npz`` beside it, atomically.

    ``arrays=False`` keeps the ``.npz`` already there (when only the JSON part changed).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if arrays:
        data: dict[str, np.ndarray] = {}
        if state.annotate is not None:
            data.update(_annotate_arrays(state.annotate))
        if state.embed is not None:
            data.update(_embed_arrays(state.embed))
        npz = arrays_file(p)
        if data:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, **data)
            with atomic_write(npz) as fh:
                fh.write(buffer.getvalue())
        elif npz.exists():
            npz.unlink()
    with atomic_write(p) as fh:
        fh.write(json.dumps(session_document(state)).encode("utf-8"))
    return p


# -- reading ---------------------------------------------------------------------------------
def _damaged(path: Path, exc: BaseException) -> InputFileError:
    return InputFileError(
        f"cannot read the saved session ({exc.__class__.__name__}: {exc})",
        path=path,
        hint="it was set aside; the work in it could not be restored",
    )


def _valid_rows(rows: Sequence[int] | np.ndarray, n_cells: int) -> np.ndarray | None:
    sel = as_rows(np.asarray(rows, dtype=np.int64))
    if len(sel) and (sel[0] < 0 or sel[-1] >= n_cells):
        return None
    return sel


def load_session(path: str | Path, n_cells: int) -> SessionState:
    """Read the session at ``path`` for a dataset of ``n_cells`` cells.

    Version 1 files (selections only) are read too. A file for another cell count gives an
    empty state. Raises :class:`InputFileError` when the file is damaged.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or int(doc.get("version", 1)) > SESSION_VERSION:
            raise ValueError("not a session file of this app version")
        state = SessionState(n_cells, str(doc.get("data", "")))
        if doc.get("n_cells") != n_cells:
            return state
        for name, rows in dict(doc.get("selections", {})).items():
            sel = _valid_rows(rows, n_cells)
            if sel is not None and len(sel):
                state.selections[str(name)] = sel
        current = _valid_rows(doc.get("current", []), n_cells)
        state.current = current if current is not None else state.current
        for item in doc.get("conversations", []):
            conv = Conversation.from_dict(item)
            state.conversations[conv.key] = conv
        state.generated = [GeneratedSet.from_dict(g) for g in doc.get("generated", [])]
        results = dict(doc.get("results", {}))
        names = dict(doc.get("cluster_names", {}))
        state.cluster_source = str(names.get("source", ""))
        state.cluster_names = {str(k): str(v) for k, v in dict(names.get("names", {})).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _damaged(p, exc) from exc
    if results:
        _load_arrays(p, results, state)
    return state


def _load_arrays(path: Path, results: dict[str, Any], state: SessionState) -> None:
    npz = arrays_file(path)
    try:
        with np.load(npz, allow_pickle=False) as z:
            if "annotate" in results:
                meta = results["annotate"]
                state.annotate = AnnotateResult(
                    rows=z["annotate_rows"],
                    labels=z["annotate_labels"].astype(object),
                    probability=z["annotate_probability"],
                    candidates=tuple(meta["candidates"]),
                    mode=str(meta["mode"]),
                    scored_rows=z["annotate_scored_rows"],
                    scored_probs=z["annotate_scored_probs"],
                    clusters=(
                        z["annotate_clusters"].astype(object) if meta.get("has_clusters") else None
                    ),
                    cluster_agreement=dict(meta.get("cluster_agreement", {})),
                    template_id=str(meta["template_id"]),
                    n_genes=int(meta["n_genes"]),
                    seconds_per_scored_cell=float(meta["seconds_per_scored_cell"]),
                    warnings=tuple(meta.get("warnings", ())),
                    cluster_source=str(meta.get("cluster_source", "")),
                    scoring=str(meta.get("scoring", "")),
                    options=_options(AnnotateOptions, meta),
                )
                _check_rows(state.annotate.rows, state.n_cells)
            if "embed" in results:
                meta = results["embed"]
                state.embed = EmbedResult(
                    rows=z["embed_rows"],
                    embedding=z["embed_embedding"],
                    layout=z["embed_layout"],
                    template_id=str(meta["template_id"]),
                    warnings=tuple(meta.get("warnings", ())),
                    options=_options(EmbedOptions, meta),
                )
                _check_rows(state.embed.rows, state.n_cells)
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        raise _damaged(npz, exc) from exc


def _options(cls: type, meta: Mapping[str, Any]) -> Any:
    """The task options saved with a result (None in sessions saved before they were)."""
    saved = meta.get("options")
    return None if not isinstance(saved, dict) else options_from(cls, saved)


def _check_rows(rows: np.ndarray, n_cells: int) -> None:
    if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= n_cells):
        raise ValueError("result rows outside the dataset")


def set_aside(path: str | Path) -> Path | None:
    """Rename a damaged session and its arrays to ``*.damaged-<time>``; returns the new name."""
    p = Path(path)
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S")
    moved = None
    for f in (p, arrays_file(p)):
        if f.exists():
            target = f.with_name(f"{f.name}.damaged-{stamp}")
            try:
                f.replace(target)
            except OSError:
                continue
            if f == p:
                moved = target
    return moved


# -- conversations as files ------------------------------------------------------------------
def conversation_markdown(conv: Conversation, data_name: str = "") -> str:
    """A readable Markdown transcript with the evidence of each answer."""
    lines = [f"# Conversation: {conv.title}", ""]
    if data_name:
        lines.append(f"Dataset: {data_name} — {conv.n_cells:,} cells selected")
        lines.append("")
    for turn in conv.turns:
        head = "Summary" if turn.kind == KIND_SUMMARY else f"Question: {turn.question}"
        lines += [f"## {head}", ""]
        if turn.status != STATUS_DONE:
            lines += [f"*({turn.status})*", ""]
        lines += [turn.answer or "(no answer)", ""]
        if turn.markers:
            lines += [f"Top genes of the selection: {', '.join(turn.markers)}", ""]
        for w in turn.warnings:
            lines += [f"> Warning: {w}", ""]
        lines += [
            f"Model: {turn.model or 'unknown'} (sha256 {turn.model_sha256 or 'n/a'}); "
            f"template: {turn.template_id}; {turn.time}",
            "",
            "<details><summary>Prompt</summary>",
            "",
            "```text",
            turn.prompt,
            "```",
            "",
            "</details>",
            "",
        ]
    return "\n".join(lines)


def conversation_json(conv: Conversation, data_name: str = "") -> str:
    """The conversation as JSON (every field kept)."""
    return json.dumps({"dataset": data_name, **asdict(conv)}, indent=1, ensure_ascii=False)


def export_conversation(
    path: str | Path, conv: Conversation, *, data_name: str = "", overwrite: bool = False
) -> Path:
    """Write ``conv`` as Markdown (``.md``) or JSON (``.json``) atomically."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".json":
        text = conversation_json(conv, data_name)
    elif suffix in (".md", ".markdown", ".txt"):
        text = conversation_markdown(conv, data_name)
    else:
        raise DataError(
            f"unknown conversation format '{p.suffix}'", path=p, hint="use .md or .json"
        )
    with atomic_write(p, overwrite=overwrite) as fh:
        fh.write(text.encode("utf-8"))
    return p
