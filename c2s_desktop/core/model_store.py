"""The local model store: the models folder, its GGUFs with provenance and hashes, the catalogue.

Models live in one folder (``$C2S_MODELS_DIR`` or the per-user data folder); the bundled demo
model is always listed too. Importing validates a GGUF first and copies it (the user's file is
never moved or changed); converting runs c2s-quantize's pipeline into the folder. Hashes come
from the app's one sha256 cache (:func:`.audit.file_sha256`: path, size, modification time).
Downloading is separate and explicit (:func:`download_checkpoint`): nothing else here touches
the network.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from . import audit
from .atomic import atomic_write
from .catalog import MODEL_TASKS
from .engine.base import ModelFileError, ModelInfo
from .errors import C2SError, Cancelled, OutputError
from .logs import APP_NAME
from .models import sha256_file, validate_gguf
from .progress import CancelToken, ProgressFn, check_cancel, no_progress
from .resources import resource_path

MODELS_ENV = "C2S_MODELS_DIR"
DEMO_MODEL = ("demo", "c2s-demo-pbmc.q8_0.gguf")
QUANT_CHOICES = ("q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0", "f16")
_COPY_CHUNK = 8 << 20


class ModelStoreError(C2SError):
    """A model cannot be imported, converted, downloaded or removed."""


@dataclass(frozen=True)
class LocalModel:
    """A GGUF in the store (or the bundled demo model); ``problem`` set when it fails validation."""

    path: Path
    info: ModelInfo | None
    sha256: str | None = None
    bundled: bool = False
    problem: str = ""

    @property
    def name(self) -> str:
        return self.info.name if self.info else self.path.stem

    @property
    def quant(self) -> str:
        return self.info.file_type if self.info else "?"

    @property
    def source(self) -> str:
        """Where it came from: the ``c2s.source_repo`` (or folder) provenance key, if any."""
        meta = self.info.metadata if self.info else {}
        return str(meta.get("c2s.source_repo") or meta.get("c2s.source_folder") or "")

    @property
    def size_bytes(self) -> int:
        return self.info.size_bytes if self.info else _size(self.path)


@dataclass(frozen=True)
class CatalogModel:
    """A released C2S model: what it does, how big it is, its licence."""

    repo: str
    architecture: str
    parameters: int | None
    download_gb: float | None
    gguf_gb: dict[str, float]
    license: str
    license_note: str
    tasks: tuple[str, ...]
    trained_tasks: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return self.repo.split("/")[-1]


# -- the folder ------------------------------------------------------------------------------------
def models_dir() -> Path:
    """The folder of local models (``$C2S_MODELS_DIR`` overrides the per-user data folder)."""
    env = os.environ.get(MODELS_ENV)
    base = Path(env) if env else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    return base if env else base / "models"


def demo_model_path() -> Path:
    """The bundled demo model (a tiny C2S model trained on the demo PBMCs)."""
    return resource_path(*DEMO_MODEL)


def list_models(directory: Path | None = None, *, with_hashes: bool = False) -> list[LocalModel]:
    """The demo model, then every ``*.gguf`` in the folder (by name); invalid files included
    with their ``problem``. ``with_hashes`` computes missing sha256 (slow for big files)."""
    folder = directory or models_dir()
    paths = sorted(folder.glob("*.gguf"), key=lambda p: p.name.lower()) if folder.is_dir() else []
    demo = demo_model_path()
    out = [describe(demo, bundled=True, with_hash=with_hashes)] if demo.is_file() else []
    out.extend(describe(p, with_hash=with_hashes) for p in paths if not p.name.startswith("."))
    return out


def describe(path: Path, *, bundled: bool = False, with_hash: bool = False) -> LocalModel:
    """Validate ``path`` and describe it; the hash comes from the cache (or is computed)."""
    try:
        info = validate_gguf(path)
    except ModelFileError as exc:
        return LocalModel(Path(path), None, None, bundled, exc.message)
    digest = cached_sha256(path) if with_hash else _cached_only(path)
    return LocalModel(Path(path), info, digest, bundled)


# -- hashes ----------------------------------------------------------------------------------------
def _cached_only(path: Path) -> str | None:
    return audit.cached_sha256_only(path)


def cached_sha256(path: str | Path) -> str:
    """sha256 of a model file, from the app's sha256 cache while its size and mtime are
    unchanged (the same cache the audit log and provenance use)."""
    return audit.file_sha256(path) or sha256_file(path)


# -- import and remove -----------------------------------------------------------------------------
def import_model(
    source: str | Path,
    directory: Path | None = None,
    *,
    overwrite: bool = False,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> LocalModel:
    """Validate the GGUF ``source`` and copy it into the store (atomically; the original stays).

    Raises :class:`ModelFileError` for a bad file, :class:`OutputError` when a different file
    of that name is already there (``overwrite`` replaces it)."""
    src = Path(source)
    validate_gguf(src)
    folder = directory or models_dir()
    _make_folder(folder)
    target = folder / src.name
    if target.exists() and target.resolve() == src.resolve():
        return describe(target, with_hash=True)
    if target.exists() and not overwrite:
        raise OutputError(
            "a model of this name is already in the models folder",
            path=target,
            hint="rename the file, or remove the model in the manager first",
        )
    total = max(_size(src), 1)
    with open(src, "rb") as fin, atomic_write(target) as fout:
        done = 0
        while chunk := fin.read(_COPY_CHUNK):
            check_cancel(cancel)
            fout.write(chunk)
            done += len(chunk)
            progress(done / total, f"copying {src.name}")
    model = describe(target, with_hash=True)
    if model.problem:  # cannot happen unless the source changed while copying
        remove_model(target, folder)
        raise ModelFileError(model.problem, path=src, hint="copy the file again")
    return model


def remove_model(path: str | Path, directory: Path | None = None) -> None:
    """Delete a model from the store (only files inside the models folder; never the demo)."""
    path, folder = Path(path), (directory or models_dir())
    if path.resolve().parent != folder.resolve():
        raise ModelStoreError(
            "only models inside the models folder can be removed",
            path=path,
            hint="delete other files yourself",
        )
    path.unlink(missing_ok=True)


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create the models folder ({exc.strerror})",
            path=folder,
            hint=f"set {MODELS_ENV} to a folder you can write to",
        ) from None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# -- catalogue -------------------------------------------------------------------------------------
def catalog_models() -> list[CatalogModel]:
    """The released C2S models from c2s-quantize's catalogue ([] when it is not installed)."""
    try:
        from c2s_quantize.catalog import load_catalog
    except ImportError:
        return []
    out = []
    for entry in load_catalog():
        raw = entry.raw
        sizes = raw.get("gguf_size_estimate") or {}
        gguf = {
            k.removesuffix("_GB"): float(v)
            for k, v in sizes.items()
            if k.endswith("_GB") and isinstance(v, int | float)
        }
        download = (raw.get("download_size_GB") or {}).get("needed")
        known = next(
            (v for k, v in MODEL_TASKS.items() if k.lower() == entry.hf_repo.lower()), None
        )
        out.append(
            CatalogModel(
                repo=entry.hf_repo,
                architecture=str(raw.get("gguf_arch") or entry.architecture),
                parameters=raw.get("parameters"),
                download_gb=float(download) if isinstance(download, int | float) else None,
                gguf_gb=gguf,
                license=entry.license,
                license_note=entry.license_note,
                tasks=tuple(sorted(known[0])) if known else (),
                trained_tasks=entry.tasks,
            )
        )
    return out


# -- convert and download (c2s-quantize) -----------------------------------------------------------
def output_name(source: str, qtype: str) -> str:
    """``C2S-Pythia-410m-cell-type-prediction.q8_0.gguf`` for a repo id or folder name."""
    stem = re.sub(r"[^\w.-]+", "_", Path(source.rstrip("/")).name) or "model"
    return f"{stem}.{qtype.lower()}.gguf"


@contextlib.contextmanager
def _quantize_errors() -> Iterator[None]:
    """c2s-quantize's errors as this package's (cancel stays cancel)."""
    try:
        from c2s_quantize.errors import Cancelled as QCancelled
        from c2s_quantize.errors import QuantizeError
    except ImportError:
        raise ModelStoreError(
            "the converter (c2s-quantize) is not installed",
            hint="install the c2s-quantize package next to C2S Desktop",
        ) from None
    try:
        yield
    except QCancelled:
        raise Cancelled() from None
    except QuantizeError as exc:
        raise ModelStoreError(exc.message, path=exc.path, hint=exc.hint) from None


def _adapt(progress: ProgressFn, lo: float, hi: float) -> Any:
    """c2s-quantize reports ``(message, fraction)``; map it into ``[lo, hi]`` of ours."""
    return lambda message, fraction: progress(lo + (hi - lo) * float(fraction), str(message))


def convert_checkpoint(
    folder: str | Path,
    qtype: str = "q8_0",
    directory: Path | None = None,
    *,
    repo: str = "",
    revision: str = "",
    overwrite: bool = False,
    threads: int = 0,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> LocalModel:
    """Convert + quantize a local checkpoint folder into the store (c2s-quantize pipeline)."""
    folder = Path(folder)
    store = directory or models_dir()
    target = store / output_name(repo or str(folder), qtype)
    if target.exists() and not overwrite:
        raise OutputError(
            "this model is already in the models folder",
            path=target,
            hint="remove it in the manager first to convert it again",
        )
    _make_folder(store)
    with _quantize_errors():
        from c2s_quantize.pipeline import quantize_checkpoint
        from c2s_quantize.provenance import SourceInfo

        if not folder.is_dir():
            raise ModelStoreError(
                "not a checkpoint folder", path=folder, hint="choose a folder with config.json"
            )
        quantize_checkpoint(
            folder,
            target,
            qtype,
            source=SourceInfo.for_folder(folder, repo, revision),
            threads=threads,
            progress=_adapt(progress, 0.0, 1.0),
            cancel=cancel,
        )
    return describe(target, with_hash=True)


def hub_host() -> str:
    """The host a download contacts (``huggingface.co`` unless ``HF_ENDPOINT`` says otherwise)."""
    from urllib.parse import urlparse

    try:
        from huggingface_hub import constants

        endpoint = str(constants.ENDPOINT)
    except ImportError:
        endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    return urlparse(endpoint).netloc or endpoint


def download_checkpoint(
    repo: str,
    qtype: str = "q8_0",
    directory: Path | None = None,
    *,
    threads: int = 0,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> LocalModel:
    """Download ``repo`` from the hub (partial downloads resume), then convert it into the store.

    A local checkpoint folder given as ``repo`` skips the download (same pipeline)."""
    if Path(repo).expanduser().is_dir():
        return convert_checkpoint(
            Path(repo).expanduser(),
            qtype,
            directory,
            threads=threads,
            progress=progress,
            cancel=cancel,
        )
    target = (directory or models_dir()) / output_name(repo, qtype)
    if target.exists():
        raise OutputError(
            "this model is already in the models folder",
            path=target,
            hint="remove it in the manager first to download it again",
        )
    with _quantize_errors():
        from c2s_quantize import hub

        progress(-1.0, f"looking up {repo} on {hub_host()}")
        remote = hub.describe(repo)
        check_cancel(cancel)
        snapshot = hub.download(remote, progress=_adapt(progress, 0.0, 0.6), cancel=cancel)
    return convert_checkpoint(
        snapshot,
        qtype,
        directory,
        repo=remote.repo_id,
        revision=remote.revision,
        threads=threads,
        progress=lambda f, m: progress(0.6 + 0.4 * f, m),
        cancel=cancel,
    )


__all__ = [
    "CatalogModel",
    "LocalModel",
    "ModelStoreError",
    "cached_sha256",
    "catalog_models",
    "convert_checkpoint",
    "demo_model_path",
    "describe",
    "download_checkpoint",
    "hub_host",
    "import_model",
    "list_models",
    "models_dir",
    "remove_model",
]
