"""The remote engine against vLLM (CPU build, fp32) serving the tiny trained checkpoints,
compared with the local engine on the same weights converted to GGUF by c2s-quantize.

Tolerances: vLLM computes in fp32 from the checkpoint's weights, as does the local engine on
the F32 GGUF, except that llama.cpp keeps its KV cache in F16 (keys and values rounded to 11
significant bits) and its flash attention works at that precision: measured here, that moves a
label token's log-probability by up to ~5e-4 nats, so labels may differ by :data:`PER_TOKEN`
nats per token. The F16 GGUF rounds every weight
as well; its scores may differ from fp32 by what that rounding does, measured in the same run
as the F32 vs F16 difference of the local engine itself: vLLM must be within that distance
(plus the per-token bound) of the F16 scores.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from c2s_desktop.core.dataset import open_dataset
from c2s_desktop.core.engine.base import EngineError, EngineOptions, GenerateParams
from c2s_desktop.core.engine.local import LocalEngine
from c2s_desktop.core.engine.remote import (
    SCORE_EXACT,
    SCORE_LABEL_LOGPROBS,
    SCORE_PROMPT_LOGPROBS,
    RemoteEngine,
    ServerOptions,
    list_models,
)
from c2s_desktop.core.resources import resource_path
from c2s_desktop.core.tasks.annotate import (
    MODE_PER_CELL,
    SCORING_EXACT,
    AnnotateOptions,
    annotate,
)
from c2s_desktop.core.tasks.chat import AskOptions, ask
from c2s_desktop.core.tasks.summarize import SummarizeOptions, summarize
from tests.engine.llama_server import free_port
from tests.helpers import cancel_at_first_token
from tests.test_cli import run

from .conftest import KEY, NAMES
from .vllm_server import PYTHON_ENV, VllmServer, vllm_python

pytestmark = pytest.mark.skipif(
    vllm_python() is None,
    reason=f"needs vLLM: run `make test-server` (${PYTHON_ENV} names its venv's Python)",
)

DATA = resource_path("demo", "pbmc_demo.h5ad")
ROWS = np.array([0, 57, 101, 250, 333, 480, 650, 699])
PER_TOKEN = 1e-3  # nats per label token: fp32 vs fp32 with llama.cpp's F16 KV cache
OPTIONS = EngineOptions(n_ctx=512, threads=1)
GREEDY = GenerateParams(max_tokens=16, temperature=0.0)


def remote_for(server: VllmServer, **kw: object) -> RemoteEngine:
    return RemoteEngine(ServerOptions(server.url, api_key=server.api_key, **kw))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def dataset():
    ds = open_dataset(DATA)
    yield ds
    ds.close()


@pytest.fixture(scope="module", params=["gptneox", "gemma2"])
def pair(request, servers, gguf) -> Iterator[tuple[str, RemoteEngine, LocalEngine]]:  # noqa: ANN001
    """(arch, the remote engine on vLLM, the local engine on the F32 GGUF)."""
    arch = request.param
    with (
        remote_for(servers[arch], concurrency=4) as remote,
        LocalEngine(gguf(arch, "f32"), OPTIONS) as local,
    ):
        yield arch, remote, local


def per_cell(rows: np.ndarray) -> AnnotateOptions:
    return AnnotateOptions(candidates_from="cell_type", mode=MODE_PER_CELL, rows=rows, n_genes=20)


# -- exact scores ---------------------------------------------------------------------------------
def test_scores_equal_fp32_and_f16_within_its_rounding(pair, gguf, prompt):
    arch, remote, local = pair
    text, continuations = prompt
    got = remote.score(text, continuations)
    assert remote.score_method == SCORE_LABEL_LOGPROBS and remote.score_warning == ""
    want = local.score(text, continuations)
    assert [s.n_tokens for s in got] == [s.n_tokens for s in want]
    vllm = np.array([s.logprob for s in got])
    f32 = np.array([s.logprob for s in want])
    bound = PER_TOKEN * np.array([s.n_tokens for s in want])
    assert np.all(np.abs(vllm - f32) <= bound), (vllm - f32, bound)
    with LocalEngine(gguf(arch, "f16"), OPTIONS) as half:
        f16 = np.array([s.logprob for s in half.score(text, continuations)])
    rounding = np.abs(f32 - f16)
    assert rounding.max() > 0  # F16 does round
    assert np.all(np.abs(vllm - f16) <= rounding + bound), (vllm - f16, rounding + bound)


@pytest.mark.parametrize("arch", ["gptneox", "gemma2"])
def test_prompt_logprobs_agree_with_label_token_logprobs(servers, prompt, arch):
    # the prompt's whole log-probabilities (no prefix cache) vs each label token's after the
    # cached prompt: the same numbers
    text, continuations = prompt
    with (
        remote_for(servers[arch], scoring=SCORE_PROMPT_LOGPROBS) as whole,
        remote_for(servers[arch]) as by_token,
    ):
        a = whole.score(text, continuations)
        b = by_token.score(text, continuations)
        assert by_token.score_method == SCORE_LABEL_LOGPROBS
    assert [s.n_tokens for s in a] == [s.n_tokens for s in b]
    np.testing.assert_allclose([s.logprob for s in a], [s.logprob for s in b], atol=1e-4)


def test_echo_scores_agree_with_prompt_logprobs(servers, prompt):
    # vLLM returns echoed prompt log-probabilities too: the method other servers use
    text, continuations = prompt
    with (
        remote_for(servers["gptneox"], scoring=SCORE_EXACT) as echo,
        remote_for(servers["gptneox"], scoring=SCORE_PROMPT_LOGPROBS) as exact,
    ):
        a = [s.logprob for s in echo.score(text, continuations)]
        b = [s.logprob for s in exact.score(text, continuations)]
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_annotation_labels_equal_the_local_engine(pair, dataset):
    _, remote, local = pair
    seen: list[str] = []
    got = annotate(dataset, remote, per_cell(ROWS), progress=lambda f, m: seen.append(m))
    want = annotate(dataset, local, per_cell(ROWS))
    assert list(got.labels) == list(want.labels)
    np.testing.assert_allclose(got.scored_probs, want.scored_probs, atol=2e-3)
    assert got.scoring == want.scoring == SCORING_EXACT
    assert got.warnings == want.warnings
    assert seen[-1].startswith(f"{len(ROWS)}/{len(ROWS)} cells scored")
    assert "cells/s" in seen[-1] and "left" in seen[-1]


# -- generation -----------------------------------------------------------------------------------
def test_greedy_generation_streams_the_local_text(pair, prompt):
    _, remote, local = pair
    pieces: list[str] = []
    got = remote.generate(prompt[0], GREEDY, on_token=pieces.append)
    assert got.text == local.generate(prompt[0], GREEDY).text
    assert len(pieces) > 1 and "".join(pieces) == got.text


def test_cancel_stops_a_stream_within_a_second(servers, prompt):
    with remote_for(servers["gemma2"]) as remote:
        got, seconds = cancel_at_first_token(remote, prompt[0], max_tokens=400)
        assert got.finish_reason == "cancelled"
        assert seconds < 1.0
        assert remote.tokenize("CD3D")  # the server answers the next request


def test_summarize_and_ask_equal_the_local_engine(pair, dataset):
    _, remote, local = pair
    s_opts = SummarizeOptions(rows=ROWS, n_cells=2, n_genes=20, params=GREEDY)
    got, want = summarize(dataset, remote, s_opts), summarize(dataset, local, s_opts)
    assert got.prompt == want.prompt and got.text == want.text and got.text
    a_opts = AskOptions(rows=ROWS, n_cells=2, n_genes=20, params=GREEDY)
    question = "What type of cells are these?"
    got_a, want_a = ask(dataset, remote, question, a_opts), ask(dataset, local, question, a_opts)
    assert got_a.answer == want_a.answer and got_a.prompt == want_a.prompt


# -- what vLLM does not serve, and failures: one clear line ---------------------------------------
def test_embeddings_from_a_generating_instance_are_a_clear_error(servers, capsys, tmp_path):
    server = servers["gemma2"]
    with remote_for(server) as remote, pytest.raises(EngineError) as info:
        remote.embed(["CD3D CD3E"])
    assert f"serves no embeddings from '{server.name}'" in str(info.value)
    assert "--runner pooling" in info.value.hint
    code, _, err = run(capsys, "embed", DATA, "--server", server.url, "-o", tmp_path / "e.h5ad")
    assert code == 2 and "serves no embeddings" in err
    assert len(err.strip().splitlines()) == 1


def test_wrong_model_missing_or_bad_key(servers, monkeypatch):
    monkeypatch.delenv("C2S_API_KEY", raising=False)
    neox = servers["gptneox"]
    with pytest.raises(EngineError, match=f"does not serve 'pythia'; it serves: {neox.name}"):
        RemoteEngine(ServerOptions(neox.url, model="pythia", api_key=KEY))
    assert list_models(ServerOptions(neox.url, api_key=KEY)) == [NAMES["gptneox"]]
    with pytest.raises(EngineError, match="needs an API key"):
        RemoteEngine(ServerOptions(neox.url))
    with pytest.raises(EngineError, match="refused the API key"):
        RemoteEngine(ServerOptions(neox.url, api_key="wrong"))


def test_timeout_is_a_clear_error(servers, prompt):
    with (
        remote_for(servers["gemma2"], timeout_s=0.005, retries=0) as remote,
        pytest.raises(EngineError, match="did not answer within 0.005 s"),
    ):
        remote.score(prompt[0], prompt[1])


def test_cli_one_line_errors(servers, capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("C2S_API_KEY", raising=False)
    neox, out = servers["gptneox"], tmp_path / "a.h5ad"
    base = ["annotate", DATA, "--candidates-from", "cell_type", "-o", out]
    cases = {
        "does not serve 'nope'": ["--server", neox.url, "--api-key", KEY, "--server-model", "nope"],
        "refused the API key": ["--server", neox.url, "--api-key", "wrong"],
        "needs an API key": ["--server", neox.url],
        "connection refused": ["--server", f"http://127.0.0.1:{free_port()}"],
    }
    for message, extra in cases.items():
        code, _, err = run(capsys, *base, *extra)
        assert code == 2 and message in err, err
        assert len(err.strip().splitlines()) == 1


# -- resumable: a connection that drops midway -----------------------------------------------------
class Flaky:
    """A loopback proxy to ``target`` that drops connections (no answer) once ``allowed``
    completion requests went through, until :attr:`allowed` is raised again; and answers
    every ``busy_every``-th completion request with 503 (too busy) when that is set."""

    def __init__(self, target: str, allowed: int, busy_every: int = 0) -> None:
        self.target, self.allowed, self.seen = target, allowed, 0
        self.busy_every, self.busy = busy_every, 0
        flaky = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                self._forward(None)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/v1/completions":
                    flaky.seen += 1
                    if flaky.seen > flaky.allowed:
                        self.close_connection = True  # dropped: no status line
                        return
                    if flaky.busy_every and flaky.seen % flaky.busy_every == 0:
                        flaky.busy += 1
                        self.send_response(503)
                        self.send_header("Retry-After", "0")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                self._forward(body)

            def _forward(self, body: bytes | None) -> None:
                r = httpx.request(
                    self.command,
                    flaky.target + self.path,
                    content=body,
                    headers={"Content-Type": "application/json"},
                    timeout=60,
                )
                self.send_response(r.status_code)
                self.send_header("Content-Type", r.headers.get("content-type", ""))
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_dropped_connection_resumes_to_the_same_labels(servers, dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("C2S_CHECKPOINT_DIR", str(tmp_path))
    flaky = Flaky(servers["gemma2"].url, allowed=10**6)
    try:
        with RemoteEngine(ServerOptions(flaky.url, concurrency=2)) as remote:
            clean = annotate(dataset, remote, per_cell(ROWS))
        flaky.seen, flaky.allowed = 0, 5  # the probe's two requests, then three cells
        with (
            RemoteEngine(ServerOptions(flaky.url, concurrency=2, retries=0)) as remote,
            pytest.raises(EngineError, match="connection broke"),
        ):
            annotate(dataset, remote, per_cell(ROWS))
        flaky.allowed = 10**6
        seen: list[str] = []
        with RemoteEngine(ServerOptions(flaky.url, concurrency=2)) as remote:
            resumed = annotate(
                dataset, remote, per_cell(ROWS), progress=lambda f, m: seen.append(m)
            )
    finally:
        flaky.close()
    assert 1 <= resumed.resumed_cells < len(ROWS)
    assert seen[0] == f"resuming: {resumed.resumed_cells} of {len(ROWS)} cells already scored"
    # vLLM batches requests differently from run to run: fp32 sums may differ in the last bits
    np.testing.assert_allclose(resumed.scored_probs, clean.scored_probs, atol=1e-5)
    assert list(resumed.labels) == list(clean.labels) and resumed.warnings == clean.warnings
    assert not list(tmp_path.glob("*.jsonl"))


def test_a_busy_server_lowers_the_requests_in_flight(servers, dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("C2S_CHECKPOINT_DIR", str(tmp_path))
    with remote_for(servers["gemma2"]) as remote:
        direct = annotate(dataset, remote, per_cell(ROWS))
    flaky = Flaky(servers["gemma2"].url, allowed=10**6, busy_every=3)
    try:
        options = ServerOptions(flaky.url, concurrency=4, backoff_s=0.01, retries=5)
        with RemoteEngine(options) as remote:
            got = annotate(dataset, remote, per_cell(ROWS))
            throttle = remote.throttle
    finally:
        flaky.close()
    assert flaky.busy >= 2 and throttle.busy_answers == flaky.busy
    assert throttle.lowest < 4  # halved at each 503, grown back as answers succeeded
    assert list(got.labels) == list(direct.labels)
