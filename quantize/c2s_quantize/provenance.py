"""Provenance written into GGUF metadata under ``c2s.*`` and read back by the app.

The app uses these keys to choose prompts automatically (``c2s.prompt_family``, ``c2s.tasks``)
and to show where a model came from. llama.cpp's quantizer copies all keys unchanged; the
output type itself is ``general.file_type``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from gguf import GGUFReader, GGUFWriter

from . import __version__
from .catalog import find_model
from .fileio import read_optional_json

PREFIX = "c2s."
_SNAPSHOT = re.compile(r"models--(?P<org>[^/]+?)--(?P<name>[^/]+)/snapshots/(?P<rev>[0-9a-f]{40})")


@dataclass(frozen=True)
class SourceInfo:
    """Where a checkpoint came from: hub repo id and commit, when known."""

    repo: str = ""
    revision: str = ""

    @classmethod
    def for_folder(cls, folder: Path, repo: str = "", revision: str = "") -> SourceInfo:
        """Given values win; otherwise infer them from a Hugging Face cache snapshot path."""
        if not repo and (m := _SNAPSHOT.search(folder.resolve().as_posix())):
            return cls(f"{m['org']}/{m['name']}", revision or m["rev"])
        return cls(repo, revision)


@dataclass(frozen=True)
class Provenance:
    """The ``c2s.*`` metadata of a converted model (field name = key after the prefix)."""

    converter: str = f"c2s-quantize {__version__}"
    source_repo: str = ""
    source_revision: str = ""
    source_folder: str = ""
    source_architecture: str = ""
    source_dtype: str = ""
    source_files: tuple[str, ...] = field(default=())  # "<sha256>  <file name>"
    license: str = ""
    prompt_family: str = ""
    tasks: tuple[str, ...] = field(default=())

    def add_to(self, writer: GGUFWriter) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                writer.add_array(PREFIX + f.name, list(value))
            else:
                writer.add_string(PREFIX + f.name, value)


def make_provenance(
    source: SourceInfo,
    folder: Path,
    architecture: str,
    source_dtype: str,
    file_hashes: dict[str, str],
) -> Provenance:
    """Provenance for a checkpoint; licence and prompt facts come from the catalogue."""
    entry = find_model(source.repo) if source.repo else None
    return Provenance(
        source_repo=source.repo,
        source_revision=source.revision,
        source_folder=folder.name,
        source_architecture=architecture,
        source_dtype=source_dtype,
        source_files=tuple(f"{h}  {name}" for name, h in sorted(file_hashes.items())),
        license=entry.license if entry else "",
        prompt_family=entry.prompt_family if entry else "",
        tasks=entry.tasks if entry else (),
    )


def read_provenance(gguf_path: Path) -> Provenance:
    """The ``c2s.*`` metadata of a GGUF file (empty fields where keys are absent)."""
    reader = GGUFReader(gguf_path)
    values: dict[str, object] = {}
    for f in fields(Provenance):
        entry = reader.fields.get(PREFIX + f.name)
        if entry is not None:
            value = entry.contents()
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return Provenance(**values)  # type: ignore[arg-type]


SOURCE_JSON = "c2s_source.json"
"""Written by the HF export beside a checkpoint it rebuilt from a GGUF: that GGUF's sha256 and
its ``c2s.source_files``, so the folder keeps the identity of the checkpoint it came from."""


def recorded_source_files(folder: Path) -> tuple[str, ...] | None:
    """The ``source_files`` an exported folder's ``c2s_source.json`` carries (None: not an export,
    or the GGUF it came from recorded none)."""
    record = read_optional_json(Path(folder) / SOURCE_JSON)
    files = record.get("source_files") if record is not None else None
    if not isinstance(files, list) or not files:
        return None
    return tuple(str(f) for f in files)
