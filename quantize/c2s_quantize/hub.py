"""Download a released checkpoint from the Hugging Face Hub — only on explicit request.

Only the files conversion needs are fetched (config, tokenizer, ``.safetensors`` weights; pickle
weights only with ``allow_pickle``), into the standard Hugging Face cache, which resumes
interrupted downloads. Nothing else in the package touches the network.
"""

from __future__ import annotations

import fnmatch
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .architectures import arch_spec
from .catalog import find_model
from .checkpoint import CONFIG, NOT_WEIGHTS, TOKENIZER_FILES, architecture_of
from .errors import Cancelled, QuantizeError
from .fileio import ensure_free_space, read_json
from .progress import CancelToken, ProgressFn, Stage, check_cancel

_META = (CONFIG, "generation_config.json", *TOKENIZER_FILES)
_SAFETENSORS = ("*.safetensors", "model.safetensors.index.json")
_PICKLE = ("pytorch_model*.bin", "pytorch_model.bin.index.json")
_LOCAL_HINT = "connect to the internet, or pass a local checkpoint folder"


@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int


@dataclass(frozen=True)
class RemoteCheckpoint:
    """A hub checkpoint at a fixed commit, the files to fetch and its licence."""

    repo_id: str
    revision: str  # commit sha
    architecture: str
    files: tuple[RemoteFile, ...]
    license: str
    license_note: str

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def describe(
    repo_id: str,
    *,
    revision: str | None = None,
    allow_pickle: bool = False,
    cache_dir: Path | None = None,
) -> RemoteCheckpoint:
    """Look a repo up (file list, licence) and check its architecture via its config.json."""
    from huggingface_hub import HfApi, hf_hub_download

    info = _hub_call(
        repo_id, lambda: HfApi().model_info(repo_id, revision=revision, files_metadata=True)
    )
    siblings = {s.rfilename: s.size or 0 for s in info.siblings or [] if "/" not in s.rfilename}
    files = _select(repo_id, siblings, allow_pickle)
    config = _hub_call(
        repo_id,
        lambda: hf_hub_download(repo_id, CONFIG, revision=info.sha, cache_dir=cache_dir),
    )
    architecture = architecture_of(read_json(Path(config)))
    arch_spec(architecture, Path(f"{repo_id}/{CONFIG}"))
    entry = find_model(repo_id)
    card = getattr(info, "card_data", None) or {}
    license_ = entry.license if entry else (card.get("license") if card else None) or "unknown"
    note = entry.license_note if entry else "not in the C2S catalogue; read the model card"
    return RemoteCheckpoint(repo_id, info.sha or "", architecture, files, license_, note)


def download(
    remote: RemoteCheckpoint,
    *,
    cache_dir: Path | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> Path:
    """Fetch ``remote``'s files (resuming partial downloads); return the local snapshot folder."""
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    cache = Path(cache_dir or constants.HF_HUB_CACHE)
    cache.mkdir(parents=True, exist_ok=True)
    missing = [
        f
        for f in remote.files
        if not isinstance(
            try_to_load_from_cache(
                remote.repo_id, f.name, cache_dir=cache, revision=remote.revision
            ),
            str,
        )
    ]
    ensure_free_space(cache, sum(f.size for f in missing), f"downloading {remote.repo_id}")
    stage, total = Stage(progress), max(remote.total_bytes, 1)
    done, local = remote.total_bytes - sum(f.size for f in missing), None
    for f in missing:
        check_cancel(cancel)
        report = functools.partial(_report_bytes, stage, f.name, done, total)
        local = _hub_call(
            remote.repo_id,
            functools.partial(
                hf_hub_download,
                remote.repo_id,
                f.name,
                revision=remote.revision,
                cache_dir=cache,
                tqdm_class=_progress_class(report, cancel),
            ),
        )
        done += f.size
    stage("downloaded", 1.0)
    first = local or try_to_load_from_cache(
        remote.repo_id, CONFIG, cache_dir=cache, revision=remote.revision
    )
    return Path(str(first)).parent


def _report_bytes(stage: Stage, name: str, before: int, total: int, n: int) -> None:
    stage(f"downloading {name}", (before + n) / total)


def _select(repo_id: str, sizes: dict[str, int], allow_pickle: bool) -> tuple[RemoteFile, ...]:
    def matching(patterns: tuple[str, ...]) -> list[str]:
        return [n for n in sizes if any(fnmatch.fnmatch(n, p) for p in patterns)]

    weights = matching(_SAFETENSORS)
    if not weights:
        pickles = [n for n in matching(_PICKLE) if n not in NOT_WEIGHTS]
        if not pickles:
            raise QuantizeError(
                "the repo has no .safetensors or pytorch_model weights",
                "check the repo id",
                Path(repo_id),
            )
        if not allow_pickle:
            raise QuantizeError(
                f"the repo only has pickle weights ({pickles[0]}); loading pickle can run code",
                "pass --allow-pickle if you trust the source (needs torch)",
                Path(repo_id),
            )
        weights = pickles
    meta = [n for n in _META if n in sizes]
    return tuple(RemoteFile(n, sizes[n]) for n in meta + sorted(weights))


def _progress_class(report: Any, cancel: CancelToken | None) -> type:
    """A tqdm stand-in for huggingface_hub: reports bytes and honours cancel (mid-file;
    the partial file stays in the cache and the next download resumes it)."""

    class ByteCounter:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.n = int(kwargs.get("initial") or 0)
            self.total = kwargs.get("total")
            report(self.n)

        def update(self, n: int | float | None = 1) -> None:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            self.n += int(n or 0)
            report(self.n)

        def __enter__(self) -> ByteCounter:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def close(self) -> None:
            return None

        def __getattr__(self, name: str) -> Any:  # set_description, refresh, ... are no-ops
            return lambda *a, **k: None

    return ByteCounter


def _hub_call(repo_id: str, call: Any) -> Any:
    """Run a huggingface_hub call, turning its failures into one clear QuantizeError."""
    from huggingface_hub import errors

    try:
        return call()
    except (Cancelled, QuantizeError):
        raise
    except errors.OfflineModeIsEnabled:
        raise QuantizeError(
            "cannot download: offline mode is on (HF_HUB_OFFLINE)", _LOCAL_HINT, Path(repo_id)
        ) from None
    except errors.GatedRepoError:
        raise QuantizeError(
            "the repo is gated",
            "accept its terms on huggingface.co and log in (hf auth login)",
            Path(repo_id),
        ) from None
    except errors.RepositoryNotFoundError:
        raise QuantizeError(
            "no such model repo on the Hugging Face Hub (or it is private)",
            "check the repo id, e.g. vandijklab/C2S-Pythia-410m-cell-type-prediction",
            Path(repo_id),
        ) from None
    except errors.RevisionNotFoundError:
        raise QuantizeError("no such revision", "check --revision", Path(repo_id)) from None
    except Exception as exc:  # network stack errors differ between hub versions
        raise QuantizeError(
            f"cannot reach the Hugging Face Hub ({type(exc).__name__}: {exc})",
            _LOCAL_HINT,
            Path(repo_id),
        ) from None
