"""LoRA adapters (GGUF, as ``c2s finetune`` writes them): what they are, and which base they fit.

An adapter is only usable with the model it was trained on. :func:`check_adapter` applies
llama.cpp's own checks before the model process loads it (architecture, every LoRA pair
present with the base tensor's shape) and, when both files record them, compares the hashes of
the base checkpoint's files (``c2s.adapter.base_files`` against the base's
``c2s.source_files``), so a wrong pairing is one clear error instead of a native abort or
silently wrong answers.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engine.base import ModelFileError, ModelInfo
from .models import check_gguf_file, check_tensor_ranges

ADAPTER_PREFIX = "c2s.adapter."
_HINT_DAMAGED = "write the adapter again with c2s finetune"
_HINT_BASE = "use the adapter with the model it was trained on, or train one for this model"
_DAMAGED = (ValueError, KeyError, IndexError, OverflowError, UnicodeDecodeError, TypeError)


@dataclass(frozen=True)
class AdapterInfo:
    """What an adapter file says about itself."""

    path: str
    architecture: str
    base_files: tuple[str, ...]
    base_name: str
    label_key: str
    labels: tuple[str, ...]
    rank: int
    alpha: float
    accuracy_before: float | None
    accuracy_after: float | None
    size_bytes: int
    provenance: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=dict, repr=False
    )
    """Base tensor name -> (lora_a, lora_b) shapes in GGUF (ne) order."""


def read_adapter(path: str | Path) -> AdapterInfo:
    """Describe a GGUF LoRA adapter; :class:`ModelFileError` if it is not one or is damaged."""
    path = Path(path)
    size = check_gguf_file(path, "adapter", "choose a .gguf adapter written by c2s finetune")
    try:
        return _describe(path, size, _reader(path))
    except _DAMAGED as exc:
        raise ModelFileError(
            f"the adapter file is truncated or damaged ({exc.__class__.__name__}: {exc})",
            path=path,
            hint=_HINT_DAMAGED,
        ) from None


def check_adapter(adapter_path: str | Path, base_path: str | Path) -> AdapterInfo:
    """The adapter's description if it belongs to the GGUF model at ``base_path``.

    Raises :class:`ModelFileError` "ADAPTER was trained for BASE_NAME, not MODEL (why)".
    """
    info = read_adapter(adapter_path)
    _check_fits(info, _read_base(Path(base_path)))
    return info


def apply_adapter(info: ModelInfo, adapter_path: str | Path, base_path: str | Path) -> ModelInfo:
    """``info`` of the base at ``base_path`` with the checked adapter applied: its path, and the
    genes per cell sentence it was trained on as the model's default (``c2s.n_genes``)."""
    adapter = check_adapter(adapter_path, base_path)
    metadata = dict(info.metadata)
    n_genes = adapter.provenance.get("n_genes")
    if isinstance(n_genes, int) and n_genes > 0:
        metadata["c2s.n_genes"] = n_genes
    return dataclasses.replace(info, adapter=str(adapter_path), metadata=metadata)


@dataclass(frozen=True)
class _Base:
    """What an adapter is checked against: the base GGUF's name, architecture, tensor shapes
    (GGUF order) and the hashes of the checkpoint it was converted from."""

    name: str
    architecture: str
    shapes: dict[str, tuple[int, ...]]
    source_files: tuple[str, ...]


def _read_base(path: Path) -> _Base:
    try:
        reader = _reader(path)
        source = reader.fields.get("c2s.source_files")
        return _Base(
            name=_text(reader, "general.name") or path.stem,
            architecture=_text(reader, "general.architecture"),
            shapes={t.name: tuple(int(d) for d in t.shape) for t in reader.tensors},
            source_files=tuple(str(s) for s in source.contents()) if source is not None else (),
        )
    except (*_DAMAGED, OSError) as exc:
        raise ModelFileError(
            f"the model file cannot be read or is damaged ({exc})",
            path=path,
            hint="download or convert the model again",
        ) from None


def _check_fits(info: AdapterInfo, base: _Base) -> None:
    """llama.cpp's checks (architecture; each pair's base tensor exists with a matching shape)
    and the checkpoint hashes when both files record them."""

    def wrong(why: str) -> ModelFileError:
        trained_for = info.base_name or "another model"
        return ModelFileError(
            f"{Path(info.path).name} was trained for {trained_for}, not {base.name} ({why})",
            path=info.path,
            hint=_HINT_BASE,
        )

    if info.architecture != base.architecture:
        raise wrong(f"architecture {info.architecture}, the model is {base.architecture}")
    for name, (a, b) in info.shapes.items():
        w = base.shapes.get(name)
        if w is None:
            raise wrong(f"the model has no tensor {name}")
        if len(w) != 2 or w[0] != a[0] or w[1] != b[1]:
            raise wrong(
                f"tensor {name} is {list(w)} in the model, the adapter fits [{a[0]}, {b[1]}]"
            )
    if info.base_files and base.source_files and set(info.base_files) != set(base.source_files):
        raise wrong("the base checkpoint's file hashes differ")


def adapters_dir() -> Path:
    """Where trained adapters are kept: ``models_dir()/adapters``."""
    from .model_store import models_dir

    return models_dir() / "adapters"


def list_adapters(directory: str | Path | None = None) -> list[AdapterInfo]:
    """Every readable adapter in ``directory`` (default :func:`adapters_dir`), by file name."""
    folder = Path(directory) if directory is not None else adapters_dir()
    found = []
    for p in sorted(folder.glob("*.gguf"), key=lambda p: p.name.lower()) if folder.is_dir() else []:
        try:
            found.append(read_adapter(p))
        except ModelFileError:
            continue  # not an adapter (or damaged): not listed
    return found


def adapters_for(base_path: str | Path, directory: str | Path | None = None) -> list[AdapterInfo]:
    """The adapters of ``directory`` that :func:`check_adapter` accepts for ``base_path``."""
    base = _read_base(Path(base_path))
    fitting = []
    for a in list_adapters(directory):
        try:
            _check_fits(a, base)
        except ModelFileError:
            continue
        fitting.append(a)
    return fitting


def describe(info: AdapterInfo) -> str:
    """One line for status bars and ``c2s`` output: name, labels, held-out accuracy."""
    parts = [info.name or Path(info.path).stem, f"LoRA r={info.rank}"]
    if info.label_key:
        parts.append(f"{len(info.labels)} labels of {info.label_key}")
    if info.accuracy_after is not None:
        before = "" if info.accuracy_before is None else f"{info.accuracy_before:.0%} → "
        parts.append(f"held-out accuracy {before}{info.accuracy_after:.0%}")
    return ", ".join(parts)


# -- reading -----------------------------------------------------------------------------------
def _reader(path: Path) -> Any:
    from gguf import GGUFReader

    return GGUFReader(path)


def _text(reader: Any, key: str) -> str:
    f = reader.fields.get(key)
    return "" if f is None else str(f.contents())


def _describe(path: Path, size: int, reader: Any) -> AdapterInfo:
    if _text(reader, "general.type") != "adapter" or _text(reader, "adapter.type") != "lora":
        raise ModelFileError(
            "not a LoRA adapter (a model or another kind of GGUF file)",
            path=path,
            hint="pass a model with --model and its adapter with --adapter",
        )
    check_tensor_ranges(reader, path, size, "adapter", _HINT_DAMAGED)
    pairs: dict[str, dict[str, tuple[int, ...]]] = {}
    for t in reader.tensors:
        base, _, part = t.name.rpartition(".")
        if part not in ("lora_a", "lora_b") or len(t.shape) != 2:
            raise ModelFileError(f"unexpected adapter tensor {t.name!r}", path=path)
        pairs.setdefault(base, {})[part] = tuple(int(d) for d in t.shape)
    shapes = {}
    for name, p in pairs.items():
        if len(p) != 2 or p["lora_a"][1] != p["lora_b"][0]:
            raise ModelFileError(
                f"the adapter's LoRA pair for {name} is incomplete or its ranks differ",
                path=path,
                hint=_HINT_DAMAGED,
            )
        shapes[name] = (p["lora_a"], p["lora_b"])
    if not shapes:
        raise ModelFileError("the adapter holds no LoRA tensors", path=path, hint=_HINT_DAMAGED)
    prov = _provenance(reader)
    alpha_field = reader.fields.get("adapter.lora.alpha")
    return AdapterInfo(
        path=str(path),
        architecture=_text(reader, "general.architecture"),
        base_files=_strings(reader, ADAPTER_PREFIX + "base_files"),
        base_name=_text(reader, ADAPTER_PREFIX + "base_name"),
        label_key=_text(reader, ADAPTER_PREFIX + "label_key"),
        labels=_strings(reader, ADAPTER_PREFIX + "labels"),
        rank=max(a[1] for a, _ in shapes.values()),
        alpha=float(alpha_field.contents()) if alpha_field is not None else 0.0,
        accuracy_before=_accuracy(prov, "before"),
        accuracy_after=_accuracy(prov, "after"),
        size_bytes=size,
        provenance=prov,
        name=_text(reader, "general.name"),
        shapes=shapes,
    )


def _strings(reader: Any, key: str) -> tuple[str, ...]:
    f = reader.fields.get(key)
    return () if f is None or not f.data else tuple(str(s) for s in f.contents())


def _provenance(reader: Any) -> dict[str, Any]:
    text = _text(reader, ADAPTER_PREFIX + "provenance")
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _accuracy(prov: dict[str, Any], when: str) -> float | None:
    """Held-out accuracy ``before``/``after`` training, however the trainer spelled the key."""
    nested = prov.get("heldout_accuracy") or prov.get("accuracy")
    for value in (
        prov.get(f"accuracy_{when}"),
        prov.get(f"heldout_accuracy_{when}"),
        nested.get(when) if isinstance(nested, dict) else None,
    ):
        if isinstance(value, int | float):
            return float(value)
    return None
