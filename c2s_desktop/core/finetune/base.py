"""The base checkpoint a run fine-tunes: a Hugging Face safetensors folder (no torch needed)."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from ..errors import C2SError, InputFileError
from ..progress import CancelToken, ProgressFn, no_progress

TARGET_MODULES: dict[str, tuple[str, ...]] = {
    "GPTNeoXForCausalLM": ("query_key_value", "dense"),
    "Gemma2ForCausalLM": ("q_proj", "k_proj", "v_proj", "o_proj"),
}
"""The linear layers LoRA adapts, per architecture (attention in and out projections)."""
GGUF_ARCH = {"GPTNeoXForCausalLM": "gptneox", "Gemma2ForCausalLM": "gemma2"}
_HINT = "give the Hugging Face folder the GGUF was converted from (config.json, *.safetensors)"


class TrainingUnavailable(C2SError):
    """torch, transformers or peft (or the adapter writer) is not installed."""


@dataclass(frozen=True)
class BaseInfo:
    """What a run needs to know of its base checkpoint before loading it."""

    path: Path
    architecture: str
    target_modules: tuple[str, ...]
    n_ctx: int
    name: str

    @property
    def gguf_architecture(self) -> str:
        return GGUF_ARCH[self.architecture]


def check_base(base: str | Path) -> BaseInfo:
    """Refuse a base that is not a supported HF checkpoint folder (one line, with the fix)."""
    path = Path(base)
    if is_gguf(path):
        raise InputFileError("is a GGUF file, not a checkpoint folder", path=path, hint=_HINT)
    if not path.is_dir():
        raise InputFileError("no such checkpoint folder", path=path, hint=_HINT)
    config_path = path / "config.json"
    try:
        config = json.loads(config_path.read_text("utf-8"))
    except FileNotFoundError:
        raise InputFileError("has no config.json", path=path, hint=_HINT) from None
    except (OSError, ValueError) as exc:
        raise InputFileError(f"unreadable config.json ({exc})", path=path, hint=_HINT) from exc
    if not any(path.glob("*.safetensors")):
        raise InputFileError("has no .safetensors weights", path=path, hint=_HINT)
    if not (path / "tokenizer.json").is_file() and not (path / "tokenizer.model").is_file():
        raise InputFileError("has no tokenizer (tokenizer.json)", path=path, hint=_HINT)
    arch = next(iter(config.get("architectures") or []), "")
    if arch not in TARGET_MODULES:
        raise InputFileError(
            f"architecture {arch or 'unknown'} cannot be fine-tuned",
            path=path,
            hint="supported: GPT-NeoX (Pythia C2S) and Gemma-2 (C2S-Scale) checkpoints",
        )
    n_ctx = int(config.get("max_position_embeddings") or 2048)
    return BaseInfo(path.resolve(), arch, TARGET_MODULES[arch], n_ctx, path.resolve().name)


def train_available() -> str | None:
    """None when torch, transformers and peft import; else the one-line hint to install them."""
    missing = [m for m in ("torch", "transformers", "peft") if find_spec(m) is None]
    if not missing:
        return None
    return (
        f"fine-tuning needs {', '.join(missing)}: "
        "pip install 'c2s-desktop[train]' (CPU works; a CUDA or MPS torch is used when present)"
    )


def is_gguf(path: str | Path) -> bool:
    return Path(path).is_file() and Path(path).suffix.lower() == ".gguf"


def can_export_gguf() -> bool:
    """Whether a GGUF base can be exported to a checkpoint folder (c2s-quantize export-hf)."""
    return find_spec("c2s_quantize") is not None and find_spec("c2s_quantize.export_hf") is not None


@contextlib.contextmanager
def base_folder(
    base: str | Path, progress: ProgressFn = no_progress, cancel: CancelToken | None = None
) -> Iterator[Path]:
    """``base`` itself, or for a GGUF file its export to a temporary checkpoint folder (which
    records the GGUF's hash and source files, so the adapter names the right base)."""
    path = Path(base)
    if not is_gguf(path) or not can_export_gguf():
        yield path
        return
    from c2s_quantize.errors import Cancelled as QCancelled
    from c2s_quantize.errors import QuantizeError
    from c2s_quantize.export_hf import export_hf

    from ..errors import Cancelled

    with tempfile.TemporaryDirectory(prefix="c2s-base-") as tmp:
        folder = Path(tmp) / path.stem
        try:
            export_hf(
                path, folder, progress=lambda m, f: progress(0.01 * float(f), str(m)), cancel=cancel
            )
        except QCancelled:
            raise Cancelled() from None
        except QuantizeError as exc:
            raise InputFileError(exc.message, path=exc.path or path, hint=exc.hint) from None
        yield folder
