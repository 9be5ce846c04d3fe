"""The Engine protocol over an OpenAI-compatible HTTP server (llama.cpp server, vLLM,
llama-cpp-python's server).

- **score**: the continuation's tokens are those after the common token prefix with the
  prefix's own tokenization (``/tokenize``), as the local engine splits them. On vLLM 0.32+
  (``logprob_token_ids``), each label token is scored as the next token after its context
  (token ids): the prefix alone first, then every other context in one request, so the server
  computes the prefix once and reuses it from its prefix cache. On older vLLM
  (``prompt_logprobs``), one request per cell with every ``prefix + continuation`` as a prompt
  list (vLLM then skips its prefix cache). Elsewhere ``echo`` and ``logprobs``, one request
  per continuation, the tokens picked by their ``text_offset`` (every token that ends after the
  prefix, so a token merged across the boundary is scored). The first call checks once which
  of the two the server returns and that its prompt log-probabilities agree with the
  log-probability of a generated token; where neither does (llama.cpp's own server refuses
  ``echo``; llama-cpp-python's shifts them by one token for models without BOS), scoring falls
  back to greedy generation matched to the nearest candidate and
  :attr:`RemoteEngine.score_warning` says the scores are approximate.
- **generate**: streamed (server-sent events); cancel is checked between chunks and closes the
  response.
- **embed**: ``POST /v1/embeddings``, one text per request; per-token vectors (what servers
  return for causal models without pooling) are mean-pooled here, as the local engine pools.
- **score_many**: cells scored by up to ``concurrency`` requests at a time (batch annotation).

Connection failures, 429 and 502/503/504 are retried with exponential back-off (bounded), and
429/503 also halve the requests :meth:`RemoteEngine.score_many` keeps in flight (grown back as
answers succeed); a timeout, a refused API key, an unknown model or an answer that is not JSON
raise :class:`EngineError` with a hint. The API key is sent as a bearer token and never logged.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from ..catalog import MODEL_TASKS
from ..progress import CancelToken, ProgressFn, check_cancel
from .base import (
    EngineError,
    GenerateParams,
    Generation,
    ModelInfo,
    Score,
    TokenCallback,
    common_prefix,
)

log = logging.getLogger(__name__)

API_KEY_ENV = "C2S_API_KEY"
DEFAULT_CTX = 2048
SCORE_AUTO = "auto"
SCORE_EXACT = "logprobs"
SCORE_PROMPT_LOGPROBS = "prompt_logprobs"
SCORE_LABEL_LOGPROBS = "label_logprobs"
SCORE_APPROXIMATE = "generate"
SCORE_METHODS = (
    SCORE_AUTO,
    SCORE_LABEL_LOGPROBS,
    SCORE_PROMPT_LOGPROBS,
    SCORE_EXACT,
    SCORE_APPROXIMATE,
)
_MAX_LABEL_TOKEN_IDS = 128  # vLLM's limit on logprob_token_ids per request
_RETRY_STATUS = frozenset({429, 502, 503, 504})
_MAX_BACKOFF_S = 8.0
_PROBE_TOLERANCE = 1e-3  # nats: prompt log-probabilities vs the generated token's
_LABEL_TOKENS = 48  # greedy tokens generated per cell by the approximate scorer
_SHARPNESS = 20.0  # approximate score = SHARPNESS * (similarity - 1): exact match → 0
_HINT_RUNNING = "check that the server is running and the address and port are right"


@dataclass(frozen=True)
class ServerOptions:
    """Where the server is and how to talk to it.

    ``api_key=None`` takes ``$C2S_API_KEY``; ``ca_bundle`` is a PEM file of extra trusted
    certificates for a lab's own certificate authority (verification is never turned off).
    ``n_ctx`` is the context size to assume when the server does not tell it. ``scoring``:
    ``auto`` (check the server once), ``prompt_logprobs`` (vLLM's) or ``logprobs`` (echoed)
    prompt log-probabilities trusted without the check, or ``generate`` (always the
    approximate method).
    """

    url: str
    model: str | None = None
    api_key: str | None = field(default=None, repr=False)
    ca_bundle: str | None = None
    n_ctx: int = 0
    concurrency: int = 1
    timeout_s: float = 120.0
    connect_timeout_s: float = 5.0
    retries: int = 3
    backoff_s: float = 0.5
    scoring: str = SCORE_AUTO


def normalize_url(url: str) -> str:
    """``http(s)://host:port`` without a trailing ``/`` or ``/v1`` (the API root)."""
    text = url.strip().rstrip("/")
    if text.endswith("/v1"):
        text = text[: -len("/v1")]
    parsed = httpx.URL(text) if "://" in text else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise EngineError(
            f"'{url}' is not a server address",
            hint="give the server's root address, e.g. http://gpu-server:8000",
        )
    return text


class Throttle:
    """How many requests to keep in flight: halved when the server answers 429 or 503 (too
    busy), grown back by one per round of successful answers, up to ``ceiling``."""

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self._limit = float(ceiling)
        self.busy_answers = 0
        self.lowest = ceiling
        self._lock = threading.Lock()

    @property
    def limit(self) -> int:
        return max(1, int(self._limit))

    def busy(self) -> None:
        with self._lock:
            self.busy_answers += 1
            self._limit = max(1.0, self._limit / 2)
            self.lowest = min(self.lowest, self.limit)

    def ok(self) -> None:
        with self._lock:
            self._limit = min(float(self.ceiling), self._limit + 1 / self._limit)


class _Http:
    """A synchronous httpx client with timeouts, bounded retries and user-facing errors."""

    def __init__(self, options: ServerOptions) -> None:
        self.url = normalize_url(options.url)
        self.options = options
        key = options.api_key if options.api_key is not None else os.environ.get(API_KEY_ENV)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.has_key = bool(key)
        self.throttle = Throttle(max(1, options.concurrency))
        verify: ssl.SSLContext | bool = True
        if options.ca_bundle:
            try:
                verify = ssl.create_default_context(cafile=options.ca_bundle)
            except (OSError, ssl.SSLError) as exc:
                raise EngineError(
                    f"cannot read the CA bundle ({exc})",
                    path=options.ca_bundle,
                    hint="give a PEM file with the certificate of the lab's authority",
                ) from None
        self.client = httpx.Client(
            base_url=self.url,
            headers=headers,
            verify=verify,
            timeout=httpx.Timeout(options.timeout_s, connect=options.connect_timeout_s),
            limits=httpx.Limits(max_connections=max(1, options.concurrency) + 1),
            follow_redirects=False,
        )

    def close(self) -> None:
        self.client.close()

    def get(self, path: str) -> Any:
        return self.request("GET", path, None)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, body)

    def request(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        """JSON answer of ``method path``; raises :class:`EngineError` (retries transient
        failures first)."""
        with self._response(method, path, body, stream=False) as response:
            return self._json(response, path)

    @contextmanager
    def stream(self, path: str, body: dict[str, Any]) -> Iterator[httpx.Response]:
        """An open streamed response (retried only until the status line arrives)."""
        with self._response("POST", path, body, stream=True) as response:
            try:
                yield response
            except httpx.TimeoutException as exc:  # while reading the stream
                raise self._timeout_error(exc) from None
            except httpx.TransportError as exc:
                raise self._transport_error(exc) from None

    @contextmanager
    def _response(
        self, method: str, path: str, body: dict[str, Any] | None, *, stream: bool
    ) -> Iterator[httpx.Response]:
        attempt = 0
        while True:
            request = self.client.build_request(method, path, json=body)
            try:
                response = self.client.send(request, stream=stream)
            except httpx.TimeoutException as exc:
                if isinstance(exc, httpx.ConnectTimeout) and attempt < self.options.retries:
                    attempt = self._sleep(attempt, None)
                    continue
                raise self._timeout_error(exc) from None
            except httpx.TransportError as exc:
                transient = isinstance(exc, httpx.ConnectError) and not _untrusted(exc)
                if transient and attempt < self.options.retries:
                    attempt = self._sleep(attempt, None)
                    continue
                raise self._transport_error(exc) from None
            if response.status_code in (429, 503):
                self.throttle.busy()
            elif response.status_code < 400:
                self.throttle.ok()
            if response.status_code in _RETRY_STATUS and attempt < self.options.retries:
                response.close()
                attempt = self._sleep(attempt, response.headers.get("retry-after"))
                continue
            try:
                if response.status_code >= 400:
                    if stream:
                        response.read()
                    raise self._status_error(response, path)
                yield response
            finally:
                response.close()
            return

    def _sleep(self, attempt: int, retry_after: str | None) -> int:
        delay = self.options.backoff_s * 2**attempt
        if retry_after and retry_after.strip().isdigit():
            delay = max(delay, float(retry_after))
        time.sleep(min(delay, _MAX_BACKOFF_S))
        return attempt + 1

    def _json(self, response: httpx.Response, path: str) -> Any:
        try:
            return response.json()
        except ValueError:
            start = response.text[:80].replace("\n", " ")
            raise EngineError(
                f"the server at {self.url} answered {path} with something that is not JSON "
                f"({start!r})",
                hint="give the root address of an OpenAI-compatible server "
                "(llama.cpp server, vLLM), e.g. http://gpu-server:8000",
            ) from None

    def _timeout_error(self, exc: httpx.TimeoutException) -> EngineError:
        if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
            return EngineError(
                f"cannot reach {self.url}: no answer within {self.options.connect_timeout_s:g} s",
                hint=_HINT_RUNNING + " (a firewall may drop the connection)",
            )
        return EngineError(
            f"the server at {self.url} did not answer within {self.options.timeout_s:g} s",
            hint="the server may be overloaded or the model too slow for it; "
            "lower the concurrency or use a faster server",
        )

    def _transport_error(self, exc: httpx.TransportError) -> EngineError:
        text = str(exc) or type(exc).__name__
        if _untrusted(exc):
            return EngineError(
                f"cannot reach {self.url}: its TLS certificate is not trusted ({text})",
                hint="give the lab's CA certificate with --ca-bundle",
            )
        reason = "connection refused" if "refused" in text.lower() else text
        if isinstance(exc, httpx.RemoteProtocolError):
            reason = f"the connection broke ({text})"
        return EngineError(f"cannot reach {self.url}: {reason}", hint=_HINT_RUNNING)

    def _status_error(self, response: httpx.Response, path: str) -> EngineError:
        code, detail = response.status_code, _detail(response)
        if code in (401, 403):
            what = "refused the API key" if self.has_key else "needs an API key"
            return EngineError(
                f"the server at {self.url} {what} (HTTP {code})",
                hint=f"give the key with --api-key or the {API_KEY_ENV} environment variable",
            )
        if code == 404 and "model" not in detail.lower():
            return EngineError(
                f"the server at {self.url} has no {path} (HTTP 404)",
                hint="give the root address of an OpenAI-compatible server "
                "(llama.cpp server, vLLM), e.g. http://gpu-server:8000",
            )
        return EngineError(f"the server at {self.url} answered {path} with HTTP {code}: {detail}")


def _untrusted(exc: Exception) -> bool:
    """The server's TLS certificate failed verification (retrying will not help)."""
    return "certificate verify failed" in str(exc).lower()


def _detail(response: httpx.Response) -> str:
    """The server's error message (OpenAI ``error.message``, FastAPI ``detail``) or the text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        for key in ("detail", "message", "error"):
            if body.get(key):
                return str(body[key])[:300]
    return str(body)[:200]


def _models(http: _Http) -> dict[str, dict[str, Any]]:
    """The server's models by id (``GET /v1/models``)."""
    answer = http.get("/v1/models")
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        raise EngineError(
            f"the server at {http.url} did not list its models",
            hint="give the root address of an OpenAI-compatible server",
        )
    return {str(m.get("id")): m for m in data if isinstance(m, dict) and m.get("id")}


def list_models(options: ServerOptions) -> list[str]:
    """Names of the models the server serves (a connection test)."""
    http = _Http(options)
    try:
        return list(_models(http))
    finally:
        http.close()


# A typical T cell's top genes and common candidates: what "Test connection" scores.
_CHECK_GENES = (
    "MALAT1 B2M TMSB4X EEF1A1 RPL13 RPS27 IL7R CD3D LTB CD3E IL32 RPS12 TPT1 CD52 LDHB "
    "NOSIP CD2 GIMAP7 CCR7 LEF1"
)
_CHECK_LABELS = ("T cell", "B cell", "monocyte", "natural killer cell", "platelet")
_CHECK_CELLS = 3


@dataclass(frozen=True)
class ServerCheck:
    """What "Test connection" found: the models, whether labels are scored exactly, and the
    measured rate of scoring one cell against :data:`_CHECK_LABELS` (after the first)."""

    models: list[str]
    model: str
    exact: bool
    method: str
    warning: str
    seconds_per_cell: float
    n_labels: int

    def summary(self) -> str:
        """One line for the dialog, e.g. ``exact scoring (prompt_logprobs), 0.31 s per cell``."""
        how = f"exact scoring ({self.method})" if self.exact else "approximate scoring"
        rate = f"{self.seconds_per_cell:.2g} s per cell ({self.n_labels} labels)"
        return f"{self.model}: {how}, {rate}" + ("" if self.exact else f" — {self.warning}")


def check_server(options: ServerOptions, cancel: CancelToken | None = None) -> ServerCheck:
    """Connect, check how the server scores labels and time a few cells (a connection test)."""
    from ..prompts import CELL_TYPE_PREDICTION, label_continuation, prompt_values, template

    with RemoteEngine(options) as engine:
        models = list(_models(engine._http))
        tmpl = template(CELL_TYPE_PREDICTION, 0)
        prompt = tmpl.format(
            **prompt_values(organism="Homo sapiens", n_genes=20, sentence=_CHECK_GENES)
        )
        labels = [label_continuation(c) for c in _CHECK_LABELS]
        engine.score(prompt, labels, cancel)  # the first call checks the server
        start = time.perf_counter()
        for _ in range(_CHECK_CELLS):
            engine.score(prompt, labels, cancel)
        seconds = (time.perf_counter() - start) / _CHECK_CELLS
        return ServerCheck(
            models=models,
            model=engine.info.name,
            exact=not engine.score_warning,
            method=engine.score_method,
            warning=engine.score_warning,
            seconds_per_cell=seconds,
            n_labels=len(labels),
        )


def catalog_repo(model_id: str) -> str:
    """The catalogue entry a served model name refers to ('' when none): the name itself
    (``--served-model-name vandijklab/C2S-Scale-Gemma-2-2B``) or a file named after it."""
    name = model_id.lower()
    matches = [r for r in MODEL_TASKS if r.lower() == name or r.lower().split("/")[-1] in name]
    return max(matches, key=len, default="")


class RemoteEngine:
    """A model served over HTTP; same protocol as :class:`~.local.LocalEngine`.

    Opening checks the server: it must answer ``/v1/models`` and serve ``options.model`` (or
    exactly one model when no name is given).
    """

    def __init__(self, options: ServerOptions) -> None:
        if options.scoring not in SCORE_METHODS:
            raise EngineError(f"unknown scoring method '{options.scoring}'")
        self._options = options
        self._http = _Http(options)
        self.url = self._http.url
        try:
            self._model, entry = self._choose_model()
            self._info, self._n_ctx = self._describe(entry)
        except BaseException:
            self._http.close()
            raise
        self._lock = threading.Lock()
        self._method = None if options.scoring == SCORE_AUTO else options.scoring
        self._probe_reason = ""
        self._tokenizer: tuple[str, Callable[[str], dict[str, Any]]] | None = None
        self._n_embd = self._info.n_embd

    # -- opening ---------------------------------------------------------------------------------
    def _choose_model(self) -> tuple[str, dict[str, Any]]:
        models = _models(self._http)
        wanted = self._options.model
        if wanted and wanted in models:
            return wanted, models[wanted]
        names = ", ".join(models) or "none"
        if wanted:
            raise EngineError(
                f"the server at {self.url} does not serve '{wanted}'; it serves: {names}",
                hint="give one of these names as the server model",
            )
        if len(models) != 1:
            raise EngineError(
                f"the server at {self.url} serves {len(models)} models ({names})",
                hint="choose one with --server-model",
            )
        return next(iter(models.items()))

    def _describe(self, entry: dict[str, Any]) -> tuple[ModelInfo, int]:
        """ModelInfo from what the server tells (vLLM ``max_model_len``, llama.cpp ``meta``
        and ``/props``) and the catalogue entry the model name refers to."""
        meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
        served = _int(entry.get("max_model_len")) or self._props_ctx()
        user = self._options.n_ctx
        n_ctx = min(user, served) if user and served else served or user
        if not n_ctx:
            log.warning("server does not tell its context size; assuming %d tokens", DEFAULT_CTX)
            n_ctx = DEFAULT_CTX
        repo = catalog_repo(self._model)
        info = ModelInfo(
            path=self.url,
            name=self._model,
            architecture=str(meta.get("architecture") or "remote"),
            n_ctx_train=_int(meta.get("n_ctx_train")) or n_ctx,
            n_embd=_int(meta.get("n_embd")),
            n_layer=0,
            n_vocab=_int(meta.get("n_vocab")),
            file_type="remote",
            size_bytes=_int(meta.get("size")),
            add_bos=False,
            metadata={"c2s.source_repo": repo} if repo else {},
        )
        return info, n_ctx

    def _props_ctx(self) -> int:
        """The slot context size llama.cpp's server reports at ``/props`` (0 elsewhere)."""
        try:
            props = self._http.get("/props")
        except EngineError:
            return 0
        settings = props.get("default_generation_settings") if isinstance(props, dict) else None
        return _int(settings.get("n_ctx")) if isinstance(settings, dict) else 0

    # -- protocol --------------------------------------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def n_ctx(self) -> int:
        """The context size in tokens (the server's, else the one given in the options)."""
        return self._n_ctx

    @property
    def concurrency(self) -> int:
        """Requests :meth:`score_many` keeps in flight."""
        return max(1, self._options.concurrency)

    @property
    def throttle(self) -> Throttle:
        """The in-flight limit of :meth:`score_many`, lowered while the server is too busy."""
        return self._http.throttle

    @property
    def scoring_option(self) -> str:
        """The scoring method asked for (:data:`SCORE_METHODS`)."""
        return self._options.scoring

    @property
    def score_method(self) -> str:
        """The scoring method in use ('' until the first score checks the server)."""
        return self._method or ""

    @property
    def score_warning(self) -> str:
        """Empty while scores are exact log-likelihoods; otherwise why they are approximate."""
        if self._method != SCORE_APPROXIMATE:
            return ""
        why = (
            f": the server at {self.url} cannot score exactly because {self._probe_reason}"
            if self._probe_reason
            else ", as configured"
        )
        return (
            "labels were scored approximately (greedy answer matched to the nearest candidate,"
            f" not log-likelihoods){why}"
        )

    def tokenize(self, text: str) -> list[int]:
        if self._tokenizer is None:
            self._tokenizer = self._find_tokenizer(text)
        path, body = self._tokenizer
        answer = self._http.post(path, body(text))
        return _tokens(answer, path, self.url)

    def score(
        self, prefix: str, continuations: Sequence[str], cancel: CancelToken | None = None
    ) -> list[Score]:
        if not prefix:
            raise EngineError("cannot score after an empty prompt", hint="give a prompt")
        if self._method is None:
            with self._lock:
                if self._method is None:
                    self._method = self._probe_scoring(prefix)
        if self._method == SCORE_APPROXIMATE:
            check_cancel(cancel)
            return self._score_by_generation(prefix, continuations)
        if self._method == SCORE_PROMPT_LOGPROBS:
            check_cancel(cancel)
            return self._score_prompt_logprobs(prefix, continuations)
        if self._method == SCORE_LABEL_LOGPROBS:
            check_cancel(cancel)
            return self._score_label_logprobs(prefix, continuations, cancel)
        scores = []
        for text in continuations:
            check_cancel(cancel)
            scores.append(self._score_logprobs(prefix, text))
        return scores

    def score_many(
        self,
        prefixes: Sequence[str],
        continuations: Sequence[str],
        on_result: Callable[[int, list[Score]], None],
        cancel: CancelToken | None = None,
    ) -> None:
        """Score ``continuations`` after each prefix, up to ``concurrency`` prefixes at a time
        (fewer while the server answers 429/503: :class:`Throttle`).

        ``on_result(i, scores)`` runs in the calling thread as each prefix finishes (in any
        order). Cancel stops new requests; requests in flight finish first.
        """
        if not prefixes:
            return
        if self._method is None:  # probe once, before requests run in parallel
            check_cancel(cancel)
            on_result(0, self.score(prefixes[0], continuations, cancel))
            start = 1
        else:
            start = 0
        pending = iter(range(start, len(prefixes)))
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="c2s-remote") as pool:
            running: dict[Future[list[Score]], int] = {}
            try:
                while True:
                    while (
                        len(running) < self.throttle.limit
                        and (i := next(pending, None)) is not None
                    ):
                        check_cancel(cancel)
                        running[pool.submit(self.score, prefixes[i], continuations, cancel)] = i
                    if not running:
                        return
                    done, _ = wait(running, timeout=0.1, return_when=FIRST_COMPLETED)
                    check_cancel(cancel)
                    for future in done:
                        on_result(running.pop(future), future.result())
            finally:
                for future in running:
                    future.cancel()

    def generate(
        self,
        prompt: str,
        params: GenerateParams,
        on_token: TokenCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Generation:
        start = time.perf_counter()
        body = self._completion_body(prompt, params) | {"stream": True}
        pieces: list[str] = []
        finish, n_tokens, usage = "length", 0, None
        with self._http.stream("/v1/completions", body) as response:
            for data in _events(response):
                if cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    break
                if data.get("usage"):
                    usage = data["usage"]
                choice = (data.get("choices") or [{}])[0]
                piece = str(choice.get("text") or "")
                if piece:
                    n_tokens += 1
                    pieces.append(piece)
                    if on_token is not None:
                        on_token(piece)
                if choice.get("finish_reason"):
                    finish = "stop" if choice["finish_reason"] == "stop" else "length"
        if usage:
            n_tokens = _int(usage.get("completion_tokens")) or n_tokens
        return Generation(
            text="".join(pieces),
            n_prompt_tokens=_int((usage or {}).get("prompt_tokens")),
            n_tokens=n_tokens,
            finish_reason=finish,
            seconds=time.perf_counter() - start,
        )

    def embed(
        self,
        texts: Sequence[str],
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> np.ndarray:
        rows = []
        for i, text in enumerate(texts):
            check_cancel(cancel)
            # one text per request: a batch of per-token outputs is not reliably split apart
            answer = self._post_embedding(text)
            rows.append(_pooled(answer, self.url))
            if progress is not None:
                progress((i + 1) / len(texts), f"embedded {i + 1}/{len(texts)}")
        if not rows:
            return np.zeros((0, self._n_embd), dtype=np.float32)
        out = np.vstack(rows).astype(np.float32)
        self._n_embd = out.shape[1]
        return out

    def _post_embedding(self, text: str) -> Any:
        try:
            return self._http.post("/v1/embeddings", {"model": self._model, "input": text})
        except EngineError as exc:
            if "HTTP 404" not in str(exc) and "HTTP 400" not in str(exc):
                raise
            raise EngineError(
                f"the server at {self.url} serves no embeddings from '{self._model}' ({exc})",
                hint="start a pooling instance of the model (vLLM: --runner pooling "
                "--convert embed with MEAN pooling; llama.cpp: --embeddings --pooling mean) "
                "and point embed at it (see SERVER.md)",
            ) from None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- scoring ---------------------------------------------------------------------------------
    def _completion_body(self, prompt: str, params: GenerateParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model,
            "prompt": prompt,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": params.top_k,
            "min_p": 0.0,  # as the local engine samples
            # always sent: servers' defaults differ (llama-cpp-python 1.1); vLLM's name second
            "repeat_penalty": params.repeat_penalty,
            "repetition_penalty": params.repeat_penalty,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        return body

    def _echo(self, text: str) -> dict[str, Any]:
        """Log-probabilities of ``text``'s tokens (echoed) and of one greedy token after it."""
        body = {
            "model": self._model,
            "prompt": text,
            "echo": True,
            "logprobs": 1,
            "max_tokens": 1,  # 0 means "no limit" to some servers
            "temperature": 0.0,
        }
        answer = self._http.post("/v1/completions", body)
        try:
            logprobs = answer["choices"][0]["logprobs"]
            offsets = [int(o) for o in logprobs["text_offset"]]
            values = logprobs["token_logprobs"]
            generated = str(answer["choices"][0].get("text") or "")
        except (KeyError, IndexError, TypeError, ValueError):
            return {}
        return {"offsets": offsets, "values": values, "text": generated}

    def _score_logprobs(self, prefix: str, continuation: str) -> Score:
        full = prefix + continuation
        echo = self._echo(full)
        picked = _continuation_tokens(echo.get("offsets", []), len(prefix), len(full))
        values = echo.get("values", [])
        if not continuation:
            return Score(0.0, 0)
        if not picked or any(i >= len(values) or values[i] is None for i in picked):
            raise EngineError(
                f"the server at {self.url} returned no log-probabilities for the label",
                hint="start the server with prompt log-probabilities enabled (see SERVER.md)",
            )
        return Score(float(sum(values[i] for i in picked)), len(picked))

    def _prompt_logprobs(
        self, prompts: Sequence[str], required: bool = False
    ) -> list[tuple[list[int], list[float | None]]]:
        """Token ids and log-probabilities of each prompt's tokens (vLLM's ``prompt_logprobs``,
        the first token's ``None``), one request for all; [] where the server has none."""
        body = {
            "model": self._model,
            "prompt": list(prompts) if len(prompts) > 1 else prompts[0],
            "max_tokens": 1,
            "temperature": 0.0,
            "prompt_logprobs": 0,
            "return_token_ids": True,
        }
        try:
            answer = self._http.post("/v1/completions", body)
        except EngineError:
            if required:
                raise
            return []  # e.g. HTTP 400: the parameter is unknown
        try:
            choices = sorted(answer["choices"], key=lambda c: int(c.get("index", 0)))
            rows = [_prompt_row(c) for c in choices]
        except (KeyError, TypeError, ValueError, AttributeError):
            rows = []
        if len(rows) != len(prompts) or any(not ids for ids, _ in rows):
            if required:
                raise EngineError(
                    f"the server at {self.url} returned no prompt log-probabilities",
                    hint="use vLLM, or scoring 'auto' (see SERVER.md)",
                )
            return []
        return rows

    def _next_token_logprobs(
        self, contexts: Sequence[Sequence[int]], token_ids: Sequence[int], required: bool = True
    ) -> list[dict[int, float]]:
        """Log-probabilities of ``token_ids`` as the next token after each context (token ids),
        from one generated token per context with vLLM's ``logprob_token_ids``."""
        body = {
            "model": self._model,
            "prompt": [list(c) for c in contexts],
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": 1,
            "logprob_token_ids": sorted(set(token_ids)),
            "return_tokens_as_token_ids": True,
        }
        try:
            answer = self._http.post("/v1/completions", body)
            choices = sorted(answer["choices"], key=lambda c: int(c.get("index", 0)))
            out = []
            for choice in choices:
                top = choice["logprobs"]["top_logprobs"][0]
                out.append({int(k.split(":", 1)[1]): float(v) for k, v in top.items()})
        except EngineError:
            if required:
                raise
            return []
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            out = []
        if len(out) != len(contexts) or any(t not in row for row in out for t in token_ids):
            if required:
                raise EngineError(
                    f"the server at {self.url} returned no log-probabilities for the labels",
                    hint="use vLLM 0.32 or later, or scoring 'prompt_logprobs' (see SERVER.md)",
                )
            return []
        return out

    def _score_label_logprobs(
        self, prefix: str, continuations: Sequence[str], cancel: CancelToken | None
    ) -> list[Score]:
        """Each continuation's log-likelihood token by token: one generated token after each
        distinct context (the prompt, then the prompt and a label's first tokens), with the
        label tokens' log-probabilities asked for. The prompt goes alone first so that the
        rest reuse its KV blocks from the server's prefix cache."""
        prefix_ids = self.tokenize(prefix)
        wanted: dict[tuple[int, ...], set[int]] = {}
        steps: list[list[tuple[tuple[int, ...], int]]] = []
        for text in continuations:
            full = self.tokenize(prefix + text) if text else prefix_ids
            split = common_prefix(full, prefix_ids)
            if text and split == 0:
                raise EngineError("the continuation changes the prompt's first token")
            cell = [(tuple(full[:j]), full[j]) for j in range(split, len(full))]
            for context, token in cell:
                wanted.setdefault(context, set()).add(token)
            steps.append(cell)
        contexts = sorted(wanted, key=len)
        found: dict[tuple[int, ...], dict[int, float]] = {}
        batches = [contexts[:1], contexts[1:]]
        for batch in (b for b in batches if b):
            check_cancel(cancel)
            ids = sorted({t for c in batch for t in wanted[c]})
            for start in range(0, len(ids), _MAX_LABEL_TOKEN_IDS):
                chunk = ids[start : start + _MAX_LABEL_TOKEN_IDS]
                asked = [c for c in batch if wanted[c] & set(chunk)]
                for context, row in zip(
                    asked, self._next_token_logprobs(asked, chunk), strict=True
                ):
                    found.setdefault(context, {}).update(row)
        return [Score(float(sum(found[c][t] for c, t in cell)), len(cell)) for cell in steps]

    def _score_prompt_logprobs(self, prefix: str, continuations: Sequence[str]) -> list[Score]:
        """Each continuation's log-likelihood from one request of ``prefix + continuation``
        prompts, split from the prefix by tokens as the local engine does."""
        prefix_ids = self.tokenize(prefix)
        texts = [c for c in continuations if c]
        rows = iter(
            self._prompt_logprobs([prefix + c for c in texts], required=True) if texts else []
        )
        scores = []
        for text in continuations:
            if not text:
                scores.append(Score(0.0, 0))
                continue
            ids, values = next(rows)
            if ids[0] == -1:  # not told: the first token is the prefix's
                ids[0] = prefix_ids[0]
            split = common_prefix(ids, prefix_ids)
            if split == 0:
                raise EngineError("the continuation changes the prompt's first token")
            picked = values[split:]
            if not picked or any(v is None for v in picked):
                raise EngineError(
                    f"the server at {self.url} returned no log-probabilities for the label",
                    hint="start the server with prompt log-probabilities enabled (see SERVER.md)",
                )
            scores.append(Score(float(sum(picked)), len(picked)))  # type: ignore[arg-type]
        return scores

    def _probe_scoring(self, prefix: str) -> str:
        """Exact scoring when prompt log-probabilities are returned and agree with the
        log-probability of a generated token; else the approximate method (warned once)."""
        plain = self._http.post(
            "/v1/completions",
            {"model": self._model, "prompt": prefix, "max_tokens": 1, "temperature": 0.0}
            | {"logprobs": 1},
        )
        try:
            choice = plain["choices"][0]
            token, expected = str(choice["text"]), float(choice["logprobs"]["token_logprobs"][0])
        except (KeyError, IndexError, TypeError, ValueError):
            token, expected = "", float("nan")
        full = prefix + token
        if token and math.isfinite(expected):
            rows = self._prompt_logprobs([full])
            if rows and rows[0][1][-1] is not None:
                got = rows[0][1][-1]
                if abs(got - expected) <= _PROBE_TOLERANCE:
                    ids = rows[0][0]
                    label = self._next_token_logprobs([ids[:-1]], [ids[-1]], required=False)
                    if label and abs(label[0].get(ids[-1], math.inf) - got) <= _PROBE_TOLERANCE:
                        return SCORE_LABEL_LOGPROBS
                    return SCORE_PROMPT_LOGPROBS
                log.warning("%s: prompt_logprobs disagree (%.4f vs %.4f)", self.url, got, expected)
        echo = self._echo(full)
        values = echo.get("values", [])
        picked = _continuation_tokens(echo.get("offsets", []), len(prefix), len(full))
        reason = ""
        if len(values) < 2 or any(v is None for v in values[1:]):
            reason = "it does not return prompt log-probabilities (echo)"
        elif token and len(picked) == 1 and abs(values[picked[0]] - expected) > _PROBE_TOLERANCE:
            reason = (
                "its prompt log-probabilities disagree with the log-probability of the token "
                f"it generates ({values[picked[0]]:.4f} vs {expected:.4f})"
            )
        if not reason:
            return SCORE_EXACT
        log.warning("%s: %s; scoring labels approximately by greedy generation", self.url, reason)
        self._probe_reason = reason
        return SCORE_APPROXIMATE

    def _score_by_generation(self, prefix: str, continuations: Sequence[str]) -> list[Score]:
        """Greedy answer after ``prefix``, compared with each continuation (approximate)."""
        params = GenerateParams(max_tokens=_LABEL_TOKENS, temperature=0.0, stop=("\n",))
        answer = self._http.post("/v1/completions", self._completion_body(prefix, params))
        try:
            text = _norm(str(answer["choices"][0]["text"]))
        except (KeyError, IndexError, TypeError):
            raise EngineError(f"the server at {self.url} sent no completion") from None
        scores = []
        for cont in continuations:
            target = _norm(cont)
            ratio = difflib.SequenceMatcher(None, text[: len(target)], target).ratio()
            scores.append(Score(_SHARPNESS * (ratio - 1.0), 0))
        return scores

    # -- tokenizing ------------------------------------------------------------------------------
    def _find_tokenizer(self, sample: str) -> tuple[str, Callable[[str], dict[str, Any]]]:
        """The server's tokenize endpoint: llama-cpp-python, llama.cpp server or vLLM."""
        model = self._model
        candidates: list[tuple[str, Callable[[str], dict[str, Any]]]] = [
            ("/extras/tokenize", lambda t: {"model": model, "input": t}),
            ("/tokenize", lambda t: {"content": t, "add_special": True}),
            ("/tokenize", lambda t: {"model": model, "prompt": t}),
        ]
        for path, body in candidates:
            try:
                _tokens(self._http.post(path, body(sample)), path, self.url)
            except EngineError:
                continue
            return path, body
        raise EngineError(
            f"the server at {self.url} cannot tokenize text (no /extras/tokenize or /tokenize)",
            hint="use llama.cpp's server, vLLM or llama-cpp-python's server",
        )


def _prompt_row(choice: dict[str, Any]) -> tuple[list[int], list[float | None]]:
    """(token ids, log-probabilities) of one prompt from a vLLM choice with
    ``prompt_logprobs``: ids from ``prompt_token_ids``, else each entry's single key (the first
    token, which has no log-probability, is then -1)."""
    entries = choice.get("prompt_logprobs")
    if not isinstance(entries, list) or not entries:
        return [], []
    given = choice.get("prompt_token_ids")
    ids: list[int] = []
    values: list[float | None] = []
    for pos, entry in enumerate(entries):
        if given is not None:
            token = int(given[pos])
            value = entry.get(str(token)) if isinstance(entry, dict) else None
        elif entry is None:
            token, value = -1, None
        elif len(entry) == 1:
            key, value = next(iter(entry.items()))
            token = int(key)
        else:
            raise ValueError("ambiguous prompt_logprobs entry")
        ids.append(token)
        values.append(float(value["logprob"]) if isinstance(value, dict) else None)
    if given is not None and len(given) != len(entries):
        raise ValueError("prompt_logprobs do not match the prompt's tokens")
    return ids, values


def _continuation_tokens(offsets: Sequence[int], boundary: int, end: int) -> list[int]:
    """Indices of the echoed prompt tokens that end after ``boundary`` (the prefix's length in
    characters) and start before ``end``; a token that spans the boundary is included."""
    picked = []
    for i, start in enumerate(offsets):
        if start >= end:
            break
        stop = offsets[i + 1] if i + 1 < len(offsets) else end
        if stop > boundary:
            picked.append(i)
    return picked


def _events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The JSON payloads of a server-sent event stream, up to ``[DONE]``."""
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        try:
            payload = json.loads(data)
        except ValueError:
            raise EngineError(f"the server sent a malformed stream event ({data[:80]!r})") from None
        if isinstance(payload, dict):
            if payload.get("error"):
                raise EngineError(f"the server failed while generating: {payload['error']}")
            yield payload


def _pooled(answer: Any, url: str) -> np.ndarray:
    """The embedding of one text: the server's pooled vector, or the mean of per-token ones."""
    try:
        vector = np.asarray(answer["data"][0]["embedding"], dtype=np.float64)
    except (KeyError, IndexError, TypeError, ValueError):
        raise EngineError(f"the server at {url} sent no embedding") from None
    if vector.ndim == 2:
        vector = vector.mean(axis=0)
    if vector.ndim != 1 or not len(vector):
        raise EngineError(f"the server at {url} sent an embedding of shape {vector.shape}")
    return vector


def _tokens(answer: Any, path: str, url: str) -> list[int]:
    tokens = answer.get("tokens") if isinstance(answer, dict) else None
    if not isinstance(tokens, list):
        raise EngineError(f"the server at {url} sent no tokens from {path}")
    return [int(t["id"]) if isinstance(t, dict) else int(t) for t in tokens]


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
