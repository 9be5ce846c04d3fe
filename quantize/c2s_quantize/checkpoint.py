"""A local Hugging Face checkpoint folder: config, weight files (lazy tensors), tokenizer files."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .errors import QuantizeError
from .fileio import read_json
from .safetensors_io import read_header

CONFIG = "config.json"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_GLOBS = ("*.bin", "*.pt", "*.pth", "*.ckpt")
PICKLE_INDEX = "pytorch_model.bin.index.json"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
)
# Training state that shares a folder with the weights but is never a model file.
NOT_WEIGHTS = ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin")


class Tensor(Protocol):
    """A lazily readable tensor of a checkpoint."""

    @property
    def name(self) -> str: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def dtype(self) -> str: ...
    @property
    def nbytes(self) -> int: ...

    def load(self) -> np.ndarray: ...
    def iter_rows(self, max_bytes: int = ...) -> Iterator[np.ndarray]: ...


@dataclass(frozen=True)
class Checkpoint:
    """What the converter needs from a checkpoint folder."""

    folder: Path
    config: Mapping[str, Any]
    weight_files: tuple[Path, ...]
    tensors: tuple[Tensor, ...]
    tokenizer_files: tuple[Path, ...]

    @property
    def architecture(self) -> str:
        return architecture_of(self.config)

    @property
    def source_dtype(self) -> str:
        """Dominant floating dtype by bytes: ``F32``, ``F16`` or ``BF16``."""
        weights = Counter[str]()
        for t in self.tensors:
            if t.dtype in ("F32", "F16", "BF16"):
                weights[t.dtype] += t.nbytes
        return weights.most_common(1)[0][0] if weights else "F32"


def architecture_of(config: Mapping[str, Any]) -> str:
    """The HF architecture class named by a config (``architectures[0]``)."""
    archs = config.get("architectures") or ["(none given)"]
    return str(archs[0])


def open_checkpoint(folder: Path, *, allow_pickle: bool = False) -> Checkpoint:
    """Read config and weight headers of ``folder``; no tensor data is read yet."""
    folder = Path(folder)
    config = read_config(folder)
    files = _safetensors_files(folder)
    if files:
        tensors = [t for f in files for t in read_header(f)]
    else:
        files = _pickle_files(folder)
        if not files:
            raise QuantizeError(
                "no model weights found (no .safetensors files)",
                "download the checkpoint's weight files into this folder",
                folder,
            )
        if not allow_pickle:
            raise QuantizeError(
                f"only pickle weights found ({files[0].name}); loading pickle can run code",
                "use a .safetensors checkpoint, or pass --allow-pickle if you trust the source "
                "(needs torch)",
                files[0],
            )
        from .pickle_io import read_pickle_tensors

        tensors = read_pickle_tensors(files)
    _check_unique(tensors, folder)
    tokenizer = tuple(folder / n for n in TOKENIZER_FILES if (folder / n).is_file())
    return Checkpoint(folder, config, tuple(files), tuple(tensors), tokenizer)


def read_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of a checkpoint folder, as a dict."""
    if not folder.is_dir():
        raise QuantizeError(
            "no such checkpoint folder",
            "pass a local checkpoint folder or a hub repo id such as "
            "vandijklab/C2S-Pythia-410m-cell-type-prediction",
            folder,
        )
    path = folder / CONFIG
    if not path.is_file():
        raise QuantizeError(
            "config.json is missing",
            "a Hugging Face checkpoint needs config.json next to its weights; download it too",
            path,
        )
    config = read_json(path)
    if not isinstance(config, dict):
        raise QuantizeError("config.json is not a JSON object", "download it again", path)
    return config


def _safetensors_files(folder: Path) -> list[Path]:
    index = folder / SAFETENSORS_INDEX
    if index.is_file():
        return _files_from_index(index)
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    return sorted(folder.glob("*.safetensors"))


def _pickle_files(folder: Path) -> list[Path]:
    index = folder / PICKLE_INDEX
    if index.is_file():
        return _files_from_index(index)
    found = {p for g in PICKLE_GLOBS for p in folder.glob(g) if p.name not in NOT_WEIGHTS}
    return sorted(found)


def _files_from_index(index: Path) -> list[Path]:
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise QuantizeError("index has no weight_map", "download the index file again", index)
    files = [index.parent / name for name in dict.fromkeys(weight_map.values())]
    for f in files:
        if not f.is_file():
            raise QuantizeError(
                f"shard {f.name} listed in {index.name} is missing",
                "download every shard of the checkpoint",
                f,
            )
    return files


def _check_unique(tensors: list[Tensor], folder: Path) -> None:
    seen: set[str] = set()
    for t in tensors:
        if t.name in seen:
            raise QuantizeError(
                f"tensor {t.name} appears in more than one weight file",
                "remove stray weight files from the folder",
                folder,
            )
        seen.add(t.name)
