"""The Engine protocol on llama-cpp-python, in this process.

Scoring decodes through llama.cpp's batch API so that only the rows it needs come back: the
prompt's last position (not every prompt token, unlike ``logits_all=True``, which costs
``n_ctx x n_vocab`` floats — 2 GB for Gemma's 256k vocabulary) and each continuation token.
The KV cache keeps the longest common token prefix between calls. Generation uses
``Llama.generate`` (which reuses the same cache); embeddings use a second context on the same
weights with mean pooling. A native abort kills this process: use :mod:`.process` in the app.
"""

from __future__ import annotations

import codecs
import ctypes
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Cancelled
from ..models import validate_gguf
from ..progress import CancelToken, ProgressFn, check_cancel
from .base import (
    EngineError,
    EngineOptions,
    GenerateParams,
    Generation,
    ModelFileError,
    ModelInfo,
    Score,
    TokenCallback,
    common_prefix,
)
from .cores import physical_cores
from .cpu_variants import ensure_loaded

_ABORTED = 2  # llama_decode's return code when the abort callback fired
GPU_LAYERS_LIMIT_ENV = "C2S_GPU_LAYERS_LIMIT"
"""Tests: pretend the GPU holds at most this many layers (loading more fails as out of VRAM)."""


def _offload_steps(requested: int, n_layer: int) -> list[int]:
    """GPU layer counts to try: as asked, then halving down to 0 (CPU only)."""
    if requested == 0:
        return [0]
    steps, n = [requested], (n_layer if requested < 0 else requested) // 2
    while n > 0:
        steps.append(n)
        n //= 2
    return [*steps, 0]


def backend() -> str:
    """``"cpu"`` or the GPU backend llama.cpp was built with (CUDA, Metal, Vulkan, ...)."""
    import llama_cpp

    ensure_loaded()
    if not llama_cpp.llama_supports_gpu_offload():
        return "cpu"
    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    names = ("CUDA", "Metal", "Vulkan", "ROCm", "HIP", "SYCL", "OpenCL", "Kompute", "CANN")
    return next((n for n in names if n.lower() in info.lower()), "gpu")


class _Batch:
    """A reusable ``llama_batch`` for one sequence."""

    def __init__(self, capacity: int) -> None:
        import llama_cpp

        self.capacity = capacity
        self.batch = llama_cpp.llama_batch_init(capacity, 0, 1)

    def fill(self, tokens: Sequence[int], pos0: int, all_outputs: bool) -> None:
        """Tokens at positions ``pos0...``; outputs for all of them or only the last."""
        b = self.batch
        b.n_tokens = len(tokens)
        for i, tok in enumerate(tokens):
            b.token[i], b.pos[i], b.n_seq_id[i] = tok, pos0 + i, 1
            b.seq_id[i][0] = 0
            b.logits[i] = all_outputs
        b.logits[len(tokens) - 1] = True

    def free(self) -> None:
        import llama_cpp

        llama_cpp.llama_batch_free(self.batch)


class LocalEngine:
    """A GGUF loaded with llama-cpp-python in this process (see the module docstring).

    ``info`` skips validation when the caller (the model process) already has it.
    """

    def __init__(
        self,
        path: str | Path,
        options: EngineOptions | None = None,
        *,
        info: ModelInfo | None = None,
    ) -> None:
        import llama_cpp

        ensure_loaded()  # llama.cpp's CPU variant (and GPU modules) for this machine
        self._options = options or EngineOptions()
        opts = self._options
        if info is None:
            info = validate_gguf(path)
            if opts.adapter:
                from ..adapters import apply_adapter

                info = apply_adapter(info, opts.adapter, path)
        self._info = info
        self._n_ctx = opts.n_ctx or self._info.n_ctx_train
        self._n_batch = min(opts.n_batch, self._n_ctx)
        threads = opts.threads or physical_cores()
        self.gpu_layers, self.load_note = opts.n_gpu_layers, ""
        for layers in _offload_steps(opts.n_gpu_layers, self._info.n_layer):
            try:
                self._llm = self._load(path, layers, threads)
            except ValueError as exc:
                if opts.adapter and "LoRA" in str(exc):
                    raise ModelFileError(
                        f"llama.cpp cannot apply the adapter ({exc})",
                        path=opts.adapter,
                        hint="write the adapter again with c2s finetune for this model",
                    ) from None
                if layers == 0:
                    raise ModelFileError(
                        f"llama.cpp cannot load this model ({exc})",
                        path=path,
                        hint="download or convert the model again",
                    ) from None
                continue  # most likely out of GPU memory: try fewer layers on the GPU
            if layers != opts.n_gpu_layers:
                asked = "all" if opts.n_gpu_layers < 0 else str(opts.n_gpu_layers)
                n = self._info.n_layer
                where = f"{layers} of {n} layers on the GPU" if layers else "on the CPU"
                self.load_note = (
                    f"the model did not fit in GPU memory with {asked} layers offloaded; "
                    f"running {where}"
                )
                self.gpu_layers = layers
            break
        self._vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        self._n_vocab = self._llm.n_vocab()  # logits row width (may exceed the real tokens)
        self._batch = _Batch(self._n_batch)
        self._prefix_row: tuple[tuple[int, ...], np.ndarray] | None = None
        self._embedder: _Embedder | None = None
        self._cancel: CancelToken | None = None
        # llama.cpp polls this between graph nodes, so cancel interrupts a long prompt too.
        self._abort_cb = llama_cpp.ggml_abort_callback(self._should_abort)
        llama_cpp.llama_set_abort_callback(self._llm.ctx, self._abort_cb, None)

    def _load(self, path: str | Path, gpu_layers: int, threads: int) -> Any:
        import llama_cpp

        limit = os.environ.get(GPU_LAYERS_LIMIT_ENV, "")
        if gpu_layers != 0 and limit.strip():
            wanted = self._info.n_layer if gpu_layers < 0 else gpu_layers
            if wanted > int(limit):  # what llama-cpp-python raises when VRAM runs out
                raise ValueError(f"Failed to load model from file: {path}")
        return llama_cpp.Llama(
            model_path=str(path),
            n_ctx=self._n_ctx,
            n_batch=self._n_batch,
            n_ubatch=self._n_batch,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=gpu_layers,
            flash_attn=self._options.flash_attn,
            seed=self._options.seed,
            swa_full=True,  # a sliding-window cache cannot be rewound to a shared prefix
            logits_all=False,
            verbose=False,
            lora_path=self._options.adapter or None,  # turns mmap off: llama.cpp reads weights
            lora_scale=self._options.adapter_scale,
        )

    # -- protocol ------------------------------------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def n_ctx(self) -> int:
        """The context size in tokens."""
        return self._n_ctx

    def tokenize(self, text: str) -> list[int]:
        # add_bos=True adds BOS only when the GGUF says the model wants one (Gemma, not NeoX).
        return self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)

    def score(
        self, prefix: str, continuations: Sequence[str], cancel: CancelToken | None = None
    ) -> list[Score]:
        prefix_ids = self.tokenize(prefix)
        if not prefix_ids:
            raise EngineError("cannot score after an empty prompt", hint="give a prompt")
        scores = []
        with self._cancellable(cancel):
            for text in continuations:
                check_cancel(cancel)
                full = self.tokenize(prefix + text)
                # Normally the prompt's tokens start the joint tokenization; if a merge crosses
                # the boundary, condition on the common tokens and score the rest.
                split = common_prefix(full, prefix_ids)
                if split == 0:
                    raise EngineError("the continuation changes the prompt's first token")
                self._check_length(len(full))
                scores.append(self._score_tokens(full[:split], full[split:]))
        return scores

    def generate(
        self,
        prompt: str,
        params: GenerateParams,
        on_token: TokenCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Generation:
        start = time.perf_counter()
        ids = self.tokenize(prompt)
        self._check_length(len(ids) + 1)
        budget = min(params.max_tokens, self._n_ctx - len(ids))
        stream = _TextStream(params.stop, on_token)
        finish, n_out = "length", 0
        self._llm.set_seed(self._options.seed if params.seed is None else params.seed)
        tokens = self._llm.generate(
            ids,
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=0.0,
            temp=params.temperature,
            repeat_penalty=params.repeat_penalty,
        )
        with self._cancellable(cancel):
            try:
                while n_out < budget:
                    tok = next(tokens)
                    if cancel is not None and cancel.is_set():
                        finish = "cancelled"
                        break
                    if self._is_eog(tok):
                        finish = "stop"
                        break
                    n_out += 1
                    if stream.feed(self._piece(tok)):
                        finish = "stop"
                        break
            except RuntimeError as exc:  # llama_decode failed inside Llama.generate
                if cancel is None or not cancel.is_set():
                    raise EngineError(f"llama.cpp could not generate ({exc})") from None
                finish = "cancelled"
            finally:
                tokens.close()
        return Generation(
            text=stream.finish(),
            n_prompt_tokens=len(ids),
            n_tokens=n_out,
            finish_reason=finish,
            seconds=time.perf_counter() - start,
        )

    def embed(
        self,
        texts: Sequence[str],
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> np.ndarray:
        if self._embedder is None:
            self._embedder = _Embedder(
                self._llm, self._n_ctx, self._options.threads or physical_cores()
            )
        out = np.zeros((len(texts), self._info.n_embd), dtype=np.float32)
        for i, text in enumerate(texts):
            check_cancel(cancel)
            ids = self.tokenize(text)
            self._check_length(len(ids))
            out[i] = self._embedder.embed(ids)
            if progress is not None:
                progress((i + 1) / len(texts), f"embedded {i + 1}/{len(texts)}")
        return out

    def close(self) -> None:
        if self._embedder is not None:
            self._embedder.free()
            self._embedder = None
        if getattr(self, "_llm", None) is not None:
            self._batch.free()
            self._llm.close()
            self._llm = None  # type: ignore[assignment]

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- scoring -------------------------------------------------------------------------------
    def _score_tokens(self, context: list[int], target: list[int]) -> Score:
        """log P(target | context), reusing the KV cache for the shared token prefix."""
        if not target:
            return Score(0.0, 0)
        cached = self._evaluated()
        key = tuple(context)
        keep = common_prefix(cached, context)
        if keep == len(context) and self._prefix_row is not None and self._prefix_row[0] == key:
            last = self._prefix_row[1]
        else:  # the last context position's logits are needed, so decode it again if cached
            keep = min(keep, len(context) - 1)
            self._rewind(keep)
            last = self._decode(context[keep:], all_outputs=False)[-1]
            self._prefix_row = (key, last)
        self._rewind(len(context))
        rows = np.vstack([last, self._decode(target, all_outputs=True)[:-1]]).astype(np.float64)
        rows -= rows.max(axis=1, keepdims=True)
        logp = rows[np.arange(len(target)), target] - np.log(np.exp(rows).sum(axis=1))
        return Score(float(logp.sum()), len(target))

    def _evaluated(self) -> list[int]:
        return self._llm.input_ids[: self._llm.n_tokens].tolist()

    def _rewind(self, keep: int) -> None:
        """Drop cached tokens from position ``keep`` on (everything if llama.cpp cannot)."""
        import llama_cpp

        mem = llama_cpp.llama_get_memory(self._llm.ctx)
        if not llama_cpp.llama_memory_seq_rm(mem, -1, keep, -1):
            llama_cpp.llama_memory_clear(mem, True)
            keep = 0
        self._llm.n_tokens = keep

    def _decode(self, tokens: Sequence[int], all_outputs: bool) -> np.ndarray:
        """Append ``tokens`` to the cache; logits rows for all of them or only the last."""
        import llama_cpp

        llm, n_vocab, rows = self._llm, self._n_vocab, []
        for start in range(0, len(tokens), self._n_batch):
            chunk = tokens[start : start + self._n_batch]
            n_past = llm.n_tokens
            self._batch.fill(chunk, n_past, all_outputs)
            rc = llama_cpp.llama_decode(llm.ctx, self._batch.batch)
            if rc != 0:
                self._rewind(0)
                if rc == _ABORTED:
                    raise Cancelled()
                raise EngineError(f"llama.cpp could not evaluate the prompt (code {rc})")
            llm.input_ids[n_past : n_past + len(chunk)] = chunk
            llm.n_tokens = n_past + len(chunk)
            n_rows = len(chunk) if all_outputs else 1
            logits = llama_cpp.llama_get_logits(llm.ctx)
            rows.append(np.ctypeslib.as_array(logits, shape=(n_rows, n_vocab)).copy())
        return np.concatenate(rows) if all_outputs else rows[-1]

    # -- helpers -------------------------------------------------------------------------------
    def _check_length(self, n_tokens: int) -> None:
        if n_tokens > self._n_ctx:
            raise EngineError(
                f"the prompt needs {n_tokens} tokens but the context holds {self._n_ctx}",
                hint="use fewer genes per cell or a larger context size",
            )

    def _is_eog(self, token: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def _piece(self, token: int) -> bytes:
        return self._llm.detokenize([token])

    def _should_abort(self, _data: Any) -> bool:
        return self._cancel is not None and self._cancel.is_set()

    @contextmanager
    def _cancellable(self, cancel: CancelToken | None) -> Iterator[None]:
        """Make ``cancel`` visible to the abort callback for the duration of one call."""
        self._cancel = cancel
        try:
            yield
        finally:
            self._cancel = None


class _TextStream:
    """Decodes token bytes incrementally, cuts at the first stop string and streams only text
    that cannot turn into a stop string."""

    def __init__(self, stop: Sequence[str], on_token: TokenCallback | None) -> None:
        self.stop = [s for s in stop if s]
        self.on_token = on_token
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text, self.sent, self.cut = "", 0, -1

    def feed(self, data: bytes) -> bool:
        """Add a token's bytes; True when a stop string has appeared."""
        self.text += self.decoder.decode(data)
        hits = [i for s in self.stop if (i := self.text.find(s)) >= 0]
        if hits:
            self.cut = min(hits)
            return True
        held = max((_overlap(self.text, s) for s in self.stop), default=0)
        self._send(len(self.text) - held)
        return False

    def finish(self) -> str:
        """The answer: text up to the stop string (or all of it); flushes the stream."""
        if self.cut < 0:
            self.text += self.decoder.decode(b"", final=True)
            self.cut = len(self.text)
        self._send(self.cut)
        return self.text[: self.cut]

    def _send(self, end: int) -> None:
        if end > self.sent:
            if self.on_token is not None:
                self.on_token(self.text[self.sent : end])
            self.sent = end


class _Embedder:
    """A second llama.cpp context on the same weights, with mean pooling of the final
    (normed) hidden state over each text's tokens."""

    def __init__(self, llm: Any, n_ctx: int, threads: int | None) -> None:
        import llama_cpp

        params = llama_cpp.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = n_ctx  # a text is one ubatch
        params.n_seq_max = 1
        params.embeddings = True
        params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_MEAN
        if threads:
            params.n_threads = params.n_threads_batch = threads
        self.ctx = llama_cpp.llama_init_from_model(llm.model, params)
        if not self.ctx:
            raise EngineError("llama.cpp could not create an embedding context")
        if llm.lora_path:  # adapters are set per context: this one needs it too
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(llm._lora_adapter)
            scales = (ctypes.c_float * 1)(llm.lora_scale)
            if llama_cpp.llama_set_adapters_lora(self.ctx, adapters, 1, scales):
                llama_cpp.llama_free(self.ctx)
                raise EngineError("llama.cpp could not apply the adapter to the embeddings")
        self.n_embd = llm.n_embd()
        self.batch = _Batch(n_ctx)

    def embed(self, ids: Sequence[int]) -> np.ndarray:
        import llama_cpp

        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)
        self.batch.fill(ids, 0, all_outputs=True)
        if llama_cpp.llama_decode(self.ctx, self.batch.batch) != 0:
            raise EngineError("llama.cpp could not embed the text")
        ptr = llama_cpp.llama_get_embeddings_seq(self.ctx, 0)
        return np.ctypeslib.as_array(ptr, shape=(self.n_embd,)).copy()

    def free(self) -> None:
        import llama_cpp

        self.batch.free()
        llama_cpp.llama_free(self.ctx)


def _overlap(text: str, stop: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``stop``."""
    for n in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0
