"""The Engine protocol: score, generate, embed — the three operations every C2S task needs.

Implementations: :mod:`.local` (llama-cpp-python in this process), :mod:`.process` (the same in a
child process that owns the model, so a native abort becomes :class:`EngineCrashed`), and later
a remote OpenAI-compatible server. Tasks only see this protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import C2SError
from ..progress import CancelToken, ProgressFn


class EngineError(C2SError):
    """The model could not be loaded or run (message + hint for the user)."""


class ModelFileError(EngineError):
    """A GGUF file is missing, malformed, or not something the bundled llama.cpp can run."""


class EngineCrashed(EngineError):
    """The model process died (native abort, out of memory); the engine can be restarted."""


class NotEnoughMemory(EngineError):
    """The model (weights + context cache) does not fit in the memory available to it."""


@dataclass(frozen=True)
class EngineOptions:
    """How to run a model. ``n_gpu_layers=-1`` offloads every layer when a GPU build exists.

    The defaults are chosen for scoring (prompt evaluation): one thread per physical core
    (``threads=None``), flash attention on, and batches of ``n_batch`` prompt tokens per
    evaluation (also the micro-batch).
    """

    n_ctx: int = 2048
    threads: int | None = None
    """None: one per physical core (:func:`.cores.physical_cores`)."""
    n_gpu_layers: int = 0
    seed: int = 0
    n_batch: int = 512
    flash_attn: bool = True
    """llama.cpp's fused attention (fewer passes over the KV cache; faster prompts on CPU)."""
    memory_limit_bytes: int | None = None
    """Address-space limit of the model process (POSIX); loading beyond it fails cleanly."""
    check_memory: bool = True
    """Refuse to load a model that will not fit in available memory (see
    :func:`.process.check_memory`); ``C2S_SKIP_MEMORY_CHECK=1`` also turns it off."""
    adapter: str | None = None
    """A GGUF LoRA adapter applied to the model (checked against it before loading)."""
    adapter_scale: float = 1.0
    """The adapter's strength (1 = as trained)."""


@dataclass(frozen=True)
class ModelInfo:
    """What the GGUF says about itself (validated before loading)."""

    path: str
    name: str
    architecture: str
    n_ctx_train: int
    n_embd: int
    n_layer: int
    n_vocab: int
    file_type: str
    size_bytes: int
    add_bos: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    """``c2s.*`` provenance keys written by c2s-quantize (prompt family, tasks, source, ...)."""
    adapter: str = ""
    """Path of the LoRA adapter the engine applies ("" when none)."""


@dataclass(frozen=True)
class Score:
    """Log-likelihood (natural log) of a continuation's tokens after the shared prefix."""

    logprob: float
    n_tokens: int


@dataclass(frozen=True)
class GenerateParams:
    """Sampling parameters; ``temperature=0`` is greedy (deterministic)."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 0.95
    repeat_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Generation:
    """A generated answer, cut from the generated tokens by position (never by string replace)."""

    text: str
    n_prompt_tokens: int
    n_tokens: int
    finish_reason: str  # "stop" (EOS or stop string), "length", "cancelled"
    seconds: float


TokenCallback = Callable[[str], None]


@runtime_checkable
class Engine(Protocol):
    """A loaded model."""

    @property
    def info(self) -> ModelInfo: ...

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` as the model sees it (BOS added when the model wants it)."""
        ...

    def score(
        self, prefix: str, continuations: Sequence[str], cancel: CancelToken | None = None
    ) -> list[Score]:
        """Log-likelihood of each continuation after ``prefix`` (prefix KV cache reused)."""
        ...

    def generate(
        self,
        prompt: str,
        params: GenerateParams,
        on_token: TokenCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Generation:
        """Generate after ``prompt``; streams text pieces to ``on_token``; cancel within 1 s."""
        ...

    def embed(
        self,
        texts: Sequence[str],
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> np.ndarray:
        """(n, n_embd) float32: final hidden state mean-pooled over each text's tokens."""
        ...

    def close(self) -> None:
        """Free the model (and its process)."""
        ...


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading token ids ``a`` and ``b`` share (where a label's tokens start)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
