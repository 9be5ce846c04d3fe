"""The base checkpoint a run fine-tunes: a Hugging Face safetensors folder (no torch needed)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from ..errors import InputFileError

TARGET_MODULES: dict[str, tuple[str, ...]] = {
    "GPTNeoXForCausalLM": ("query_key_value", "dense"),
    "Gemma2ForCausalLM": ("q_proj", "k_proj", "v_proj", "o_proj"),
}
"""The linear layers LoRA adapts, per architecture (attention in and out projections)."""
GGUF_ARCH = {"GPTNeoXForCausalLM": "gptneox", "Gemma2ForCausalLM": "gemma2"}
_HINT = "give the Hugging Face folder the GGUF was converted from (config.json, *.safetensors)"


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
    if path.is_file() and path.suffix.lower() == ".gguf":
        hint = (
            "export it first: c2s-quantize export-hf MODEL.gguf DIR"
            if find_spec("c2s_quantize.export_hf") is not None
            else _HINT
        )
        raise InputFileError("is a GGUF file, not a checkpoint folder", path=path, hint=hint)
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
