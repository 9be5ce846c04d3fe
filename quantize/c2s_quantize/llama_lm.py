"""llama.cpp (llama-cpp-python) as a :class:`~c2s_quantize.evaluate.LanguageModel`.

Used inside the worker process only: a malformed GGUF can abort the process in llama.cpp.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import QuantizeError
from .evaluate import Tokenized, tokenize_probe
from .probes import Probe


class LlamaLM:
    """A GGUF loaded with ``logits_all`` so every position's logits can be read back
    (``vocab_only`` loads just the tokenizer; ``threads`` 0 = llama-cpp-python's default)."""

    def __init__(
        self, path: Path, n_ctx: int = 512, *, threads: int = 0, vocab_only: bool = False
    ) -> None:
        from llama_cpp import Llama

        self.path, self.n_ctx = path, n_ctx
        try:
            self.llm = Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_batch=min(512, n_ctx),
                logits_all=True,
                n_threads=threads or None,
                n_threads_batch=threads or None,
                vocab_only=vocab_only,
                verbose=False,
            )
        except ValueError as exc:
            raise QuantizeError(
                f"llama.cpp cannot load this GGUF ({exc})", "convert the checkpoint again", path
            ) from None
        self._evaluated: list[int] = []

    def close(self) -> None:
        self.llm.close()

    def tokenize(self, text: str, *, at_start: bool) -> list[int]:
        # add_bos=True lets llama.cpp add BOS only when the GGUF says the model uses one.
        return self.llm.tokenize(text.encode("utf-8"), add_bos=at_start, special=False)

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        ids = list(ids)
        if len(ids) > self.n_ctx:
            raise QuantizeError(f"{len(ids)} tokens exceed n_ctx={self.n_ctx}", "", self.path)
        # Re-use the KV cache for a shared prefix (exact: earlier rows stay in llm.scores).
        keep = 0
        for a, b in zip(self._evaluated, ids[:-1], strict=False):
            if a != b:
                break
            keep += 1
        self.llm.n_tokens = keep
        self.llm.eval(ids[keep:])
        self._evaluated = ids
        return np.array(self.llm.scores[: len(ids)], dtype=np.float32)


def tokenize_only(path: Path, probes: Sequence[Probe]) -> list[Tokenized]:
    """Tokenize probes with a GGUF's vocabulary only (no weights loaded)."""
    lm = LlamaLM(path, vocab_only=True)
    try:
        return [tokenize_probe(lm, p) for p in probes]
    finally:
        lm.close()
