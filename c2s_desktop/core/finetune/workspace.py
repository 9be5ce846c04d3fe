"""Where fine-tuning keeps its files: adapter names that never overwrite, the file of chosen
cells, the base checkpoints made from GGUF models; and its side jobs in a child process
(measuring a step, exporting a base) so torch stays out of the caller's process."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..atomic import atomic_write
from ..child_call import call_in_child
from ..progress import CancelToken
from ..selection import session_dir

if TYPE_CHECKING:
    from .options import FinetuneOptions


def slug(text: str) -> str:
    """``text`` as a file-name part (letters, digits, ``_.-``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "model"


def adapter_path(base_name: str, label_key: str, directory: Path) -> Path:
    """``<directory>/<base>-<label column>.gguf``; ``-2``, ``-3``… when taken (never
    overwriting)."""
    stem = f"{slug(base_name)}-{slug(label_key)}"
    path = Path(directory) / f"{stem}.gguf"
    n = 2
    while path.exists():
        path = Path(directory) / f"{stem}-{n}.gguf"
        n += 1
    return path


def cell_list(cell_ids: np.ndarray) -> Path:
    """A file of the chosen cells' ids (one per line), named by its content, for the core's
    ``cells`` selector (the same cells give the same file: a later run resumes)."""
    text = "cell_id\n" + "".join(f"{c}\n" for c in np.asarray(cell_ids).astype(str))
    data = text.encode("utf-8")
    path = session_dir() / "finetune" / f"cells-{hashlib.sha256(data).hexdigest()[:16]}.txt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as fh:
            fh.write(data)
    return path


def exported_base(gguf_path: Path, digest: str) -> Path:
    """Where :func:`base_from_gguf` puts the checkpoint made from a GGUF."""
    from ..model_store import models_dir

    return models_dir() / "bases" / f"{slug(Path(gguf_path).stem)}-{digest[:10]}"


def guess_base(gguf_path: Path, metadata: Mapping[str, Any], sha256: str | None) -> Path | None:
    """The checkpoint made from this GGUF before, or a folder named as its
    ``c2s.source_folder`` beside it (None when neither is there)."""
    folder = str(metadata.get("c2s.source_folder", "") or "")
    candidates = [Path(gguf_path).parent / folder] if folder else []
    if sha256:
        candidates.insert(0, exported_base(Path(gguf_path), sha256))
    return next((c for c in candidates if (c / "config.json").is_file()), None)


def measure_in_child(
    data_path: Path, base_dir: Path, options: FinetuneOptions, cancel: CancelToken | None = None
) -> float:
    """Seconds per training step (:func:`.train.measure_step`) measured in a child process."""
    from . import measure_step

    return float(call_in_child(measure_step, str(data_path), str(base_dir), options, cancel=cancel))


def base_from_gguf(gguf_path: Path, cancel: CancelToken | None = None) -> Path:
    """A Hugging Face checkpoint folder made from a GGUF (c2s-quantize's ``export_hf``, in a
    child process) under ``models/bases/``; one made before is reused."""
    from c2s_quantize.export_hf import export_hf

    from ..model_store import cached_sha256

    folder = exported_base(Path(gguf_path), cached_sha256(Path(gguf_path)))
    if (folder / "config.json").is_file():
        return folder
    result = call_in_child(export_hf, Path(gguf_path), folder, cancel=cancel)
    return Path(result.folder)
