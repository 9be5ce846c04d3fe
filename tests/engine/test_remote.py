"""The remote engine against a real OpenAI-compatible server on loopback: llama-cpp-python's own
server (``python -m llama_cpp.server``) on the demo model, compared with the local engine on the
same file; and the failures a lab meets (server down, slow, wrong model, API key, not JSON)."""

from __future__ import annotations

import difflib
import http.server
import json
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import numpy as np
import pytest

pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server] (dev extra)")

from c2s_desktop.core.dataset import open_dataset  # noqa: E402
from c2s_desktop.core.engine.base import EngineError, EngineOptions, GenerateParams  # noqa: E402
from c2s_desktop.core.engine.local import LocalEngine  # noqa: E402
from c2s_desktop.core.engine.remote import RemoteEngine, ServerOptions, list_models  # noqa: E402
from c2s_desktop.core.prompts import (  # noqa: E402
    CELL_TYPE_PREDICTION,
    prompt_values,
    template,
)
from c2s_desktop.core.resources import resource_path  # noqa: E402
from c2s_desktop.core.sentences import cell_sentences  # noqa: E402
from c2s_desktop.core.tasks.annotate import MODE_PER_CELL, AnnotateOptions, annotate  # noqa: E402

from ..helpers import cancel_at_first_token  # noqa: E402
from ..test_cli import run  # noqa: E402
from .llama_server import free_port, llama_server  # noqa: E402

MODEL = resource_path("demo", "c2s-demo-pbmc.q8_0.gguf")
DATA = resource_path("demo", "pbmc_demo.h5ad")
ALIAS = "c2s-desktop/demo-pbmc-tiny"  # the catalogue name of the demo model
KEY = "lab-secret-key"
CTX = 2048
ROWS = np.array([0, 101, 333, 650])
OPTIONS = EngineOptions(n_ctx=CTX, threads=1)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """llama-cpp-python's server on the demo model (GPT-NeoX, no BOS), with embeddings and an
    API key, once for the module."""
    with llama_server(MODEL, alias=ALIAS, api_key=KEY, n_ctx=CTX, embedding=True) as url:
        yield url


@pytest.fixture(scope="module")
def local() -> Iterator[LocalEngine]:
    with LocalEngine(MODEL, OPTIONS) as engine:
        yield engine


@pytest.fixture
def remote(server: str) -> Iterator[RemoteEngine]:
    with RemoteEngine(ServerOptions(server, api_key=KEY, concurrency=2)) as engine:
        yield engine


@pytest.fixture(scope="module")
def gemma(gguf) -> Iterator[tuple[RemoteEngine, LocalEngine]]:  # noqa: ANN001
    """The tiny Gemma-2 test model (its tokenizer adds BOS) served and loaded locally."""
    path = gguf("gemma2", "f32")
    with (
        llama_server(path, n_ctx=CTX) as url,
        RemoteEngine(ServerOptions(url, concurrency=2)) as remote,
        LocalEngine(path, OPTIONS) as local,
    ):
        yield remote, local


@pytest.fixture(scope="module")
def dataset():
    ds = open_dataset(DATA)
    yield ds
    ds.close()


@pytest.fixture(scope="module")
def prompts(dataset) -> list[str]:
    tmpl = template(CELL_TYPE_PREDICTION, 0)
    return [
        tmpl.format(**prompt_values(organism=dataset.organism, n_genes=200, sentence=s))
        for s in cell_sentences(dataset, ROWS[:2], top_k=200)
    ]


def labels(dataset) -> list[str]:
    return sorted(dataset.obs["cell_type"].astype(str).unique())


def per_cell(rows: np.ndarray, n_genes: int | None = None) -> AnnotateOptions:
    return AnnotateOptions(
        candidates_from="cell_type", mode=MODE_PER_CELL, rows=rows, n_genes=n_genes
    )


# Flash attention (on by default, both sides) accumulates in F16 on the CPU: the server's
# one-pass evaluation of prompt + label and the local engine's KV-cache reuse differ by up to
# ~2e-3 nats (measured); without it they agree within 1e-3.
FLASH_ATOL = 5e-3


# -- exact scores: a model whose prompt log-probabilities the server reports correctly -----------
def test_scores_equal_the_local_engine(gemma, prompt):
    remote, local = gemma
    text, continuations = prompt
    got, want = remote.score(text, continuations), local.score(text, continuations)
    assert [s.n_tokens for s in got] == [s.n_tokens for s in want]
    np.testing.assert_allclose([s.logprob for s in got], [s.logprob for s in want], atol=FLASH_ATOL)
    assert remote.score_warning == ""


def test_annotation_labels_equal_the_local_engine(gemma, dataset):
    remote, local = gemma
    seen: list[str] = []
    got = annotate(dataset, remote, per_cell(ROWS, 20), progress=lambda f, m: seen.append(m))
    want = annotate(dataset, local, per_cell(ROWS, 20))
    assert list(got.labels) == list(want.labels)
    np.testing.assert_allclose(got.scored_probs, want.scored_probs, atol=FLASH_ATOL)
    assert got.warnings == want.warnings
    assert seen[-1].startswith(f"{len(ROWS)}/{len(ROWS)} cells scored")


# -- the demo model: same tokens, text and embeddings; scores approximate, and said so -----------
def test_info_names_the_served_model_and_its_catalogue_entry(remote, server):
    assert remote.info.name == ALIAS and remote.info.path == server
    assert remote.info.metadata["c2s.source_repo"] == ALIAS
    assert remote.n_ctx == 2048  # llama-cpp-python does not tell: the default


def test_tokenize_equals_the_local_engine(remote, local, prompts):
    assert remote.tokenize(prompts[0]) == local.tokenize(prompts[0])


def test_shifted_prompt_logprobs_are_detected_and_labels_come_from_greedy_answers(
    remote, local, dataset
):
    # llama-cpp-python 0.3.36 pairs echoed prompt tokens with the wrong logits row when the
    # model has no BOS token (GPT-NeoX): the probe sees the disagreement, and each cell's label
    # is then the candidate nearest to its greedy answer (the local model's answer).
    got = annotate(dataset, remote, per_cell(ROWS))
    assert "disagree" in remote.score_warning
    assert any("scored approximately" in w for w in got.warnings)
    tmpl = template(CELL_TYPE_PREDICTION, 0)
    params = GenerateParams(max_tokens=48, temperature=0.0, stop=("\n",))
    for label, sentence in zip(
        got.labels, cell_sentences(dataset, ROWS, top_k=got.n_genes), strict=True
    ):
        values = prompt_values(organism=dataset.organism, n_genes=got.n_genes, sentence=sentence)
        answer = " ".join(local.generate(tmpl.format(**values), params).text.split()).lower()
        assert label == max(got.candidates, key=lambda c: similarity(answer, f"{c}.".lower()))


def similarity(answer: str, target: str) -> float:
    return difflib.SequenceMatcher(None, answer[: len(target)], target).ratio()


def test_greedy_generation_streams_the_local_text(remote, local, prompts):
    params = GenerateParams(max_tokens=12, temperature=0.0)
    pieces: list[str] = []
    got = remote.generate(prompts[0], params, on_token=pieces.append)
    assert got.text == local.generate(prompts[0], params).text
    assert len(pieces) > 1 and "".join(pieces) == got.text
    assert got.finish_reason in ("stop", "length")


@pytest.mark.timing
def test_cancel_stops_a_stream_within_a_second(remote, prompts):
    got, seconds = cancel_at_first_token(remote, prompts[0], max_tokens=1500)
    assert got.finish_reason == "cancelled"
    assert seconds < 1.0
    assert remote.tokenize("CD3D")  # the server answers the next request


def test_embeddings_equal_local_mean_pooling(remote, local, prompts):
    got = remote.embed(prompts)
    want = local.embed(prompts)
    assert got.shape == want.shape == (2, local.info.n_embd)
    # the server returns per-token vectors (pooled here); its batch sizes differ from the
    # local embedding context's, so the sums differ in the last digits
    error = np.linalg.norm(got - want, axis=1) / np.linalg.norm(want, axis=1)
    assert error.max() < 5e-3


# -- approximate scoring where the server gives no prompt log-probabilities ----------------------
@contextmanager
def proxy(
    target: str, rewrite: Callable[[dict], dict] = dict, tls: ssl.SSLContext | None = None
) -> Iterator[str]:
    """A loopback HTTP proxy to ``target`` that rewrites JSON request bodies (e.g. drops
    ``echo`` the way llama.cpp's own server ignores it)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self._forward(None)

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self._forward(rewrite(body))

        def _forward(self, body: dict | None) -> None:
            headers = {"Authorization": self.headers.get("Authorization", "")}
            r = httpx.request(
                self.command, target + self.path, json=body, headers=headers, timeout=60
            )
            self.send_response(r.status_code)
            self.send_header("Content-Type", r.headers.get("content-type", "application/json"))
            self.send_header("Content-Length", str(len(r.content)))
            self.end_headers()
            self.wfile.write(r.content)

    with serve(Handler, tls) as url:
        yield url


@contextmanager
def serve(
    handler: type[http.server.BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None
) -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        srv.socket = tls.wrap_socket(srv.socket, server_side=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        scheme = "https" if tls is not None else "http"
        yield f"{scheme}://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join()


def test_without_prompt_logprobs_scores_are_approximate_and_said_so(server, dataset):
    def no_echo(body: dict) -> dict:
        return {k: v for k, v in body.items() if k != "echo"}

    opts = AnnotateOptions(candidates_from="cell_type", mode=MODE_PER_CELL, rows=ROWS[:2])
    with (
        proxy(server, no_echo) as url,
        RemoteEngine(ServerOptions(url, api_key=KEY)) as engine,
    ):
        result = annotate(dataset, engine, opts)
    assert any("scored approximately" in w and "echo" in w for w in result.warnings)
    assert set(result.labels) <= set(labels(dataset))
    assert np.allclose(result.scored_probs.sum(axis=1), 1.0)


# -- failures: clear errors ---------------------------------------------------------------------
def test_server_down_is_a_clear_error_after_bounded_retries():
    url = f"http://127.0.0.1:{free_port()}"
    start = time.perf_counter()
    with pytest.raises(EngineError, match=f"cannot reach {url}: connection refused") as info:
        RemoteEngine(ServerOptions(url, retries=2, backoff_s=0.1))
    assert 0.3 <= time.perf_counter() - start < 5  # two back-offs (0.1 + 0.2 s), then give up
    assert "server is running" in info.value.hint


class _Slow(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        time.sleep(2)
        self.send_response(200)
        self.end_headers()


class _NotJson(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        if self.path != "/v1/models":
            self.send_error(404)
            return
        body = b"<html>a web page</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_slow_server_times_out_with_a_clear_error():
    with serve(_Slow) as url, pytest.raises(EngineError, match="did not answer within 0.5 s"):
        RemoteEngine(ServerOptions(url, timeout_s=0.5))


def test_answer_that_is_not_json_is_a_clear_error():
    with serve(_NotJson) as url, pytest.raises(EngineError, match="not JSON") as info:
        RemoteEngine(ServerOptions(url))
    assert "OpenAI-compatible" in info.value.hint


def test_missing_api_is_a_clear_error():
    with serve(_NotJson) as url, pytest.raises(EngineError, match="has no /v1/models"):
        RemoteEngine(ServerOptions(url + "/somewhere/else"))


def test_wrong_model_name_lists_the_served_models(server):
    with pytest.raises(EngineError, match=f"does not serve 'pythia'; it serves: {ALIAS}"):
        RemoteEngine(ServerOptions(server, model="pythia", api_key=KEY))
    assert list_models(ServerOptions(server, api_key=KEY)) == [ALIAS]


def test_api_key_missing_or_wrong_or_from_the_environment(server, monkeypatch):
    monkeypatch.delenv("C2S_API_KEY", raising=False)
    with pytest.raises(EngineError, match="needs an API key") as info:
        RemoteEngine(ServerOptions(server))
    assert "--api-key" in info.value.hint and "C2S_API_KEY" in info.value.hint
    with pytest.raises(EngineError, match="refused the API key"):
        RemoteEngine(ServerOptions(server, api_key="wrong"))
    monkeypatch.setenv("C2S_API_KEY", KEY)
    with RemoteEngine(ServerOptions(server)) as engine:
        assert engine.info.name == ALIAS
    assert KEY not in repr(ServerOptions(server, api_key=KEY))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_https_needs_the_labs_ca_certificate(server, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with proxy(server, tls=tls) as url:
        assert url.startswith("https://")
        with pytest.raises(EngineError, match="TLS certificate is not trusted") as info:
            RemoteEngine(ServerOptions(url, api_key=KEY))
        assert "--ca-bundle" in info.value.hint
        with RemoteEngine(ServerOptions(url, api_key=KEY, ca_bundle=str(cert))) as engine:
            assert engine.info.name == ALIAS
    with pytest.raises(EngineError, match="cannot read the CA bundle"):
        RemoteEngine(ServerOptions(url, ca_bundle=str(tmp_path / "missing.pem")))


def test_bad_addresses_are_refused_before_connecting():
    for url in ("gpu-server:8000", "ftp://host/", "http://"):
        with pytest.raises(EngineError, match="is not a server address"):
            RemoteEngine(ServerOptions(url))


# -- the CLI ------------------------------------------------------------------------------------
def test_cli_annotate_through_the_server(capsys, tmp_path, server, dataset, audit_log):
    cells = tmp_path / "cells.txt"
    cells.write_text("\n".join(dataset.cell_ids[ROWS[:3]]) + "\n")
    out = tmp_path / "a.h5ad"
    args = ["annotate", DATA, "--server", server + "/v1", "--api-key", KEY, "-o", out]
    args += ["--candidates-from", "cell_type", "--cells", cells, "--mode", "per-cell"]
    code, stdout, err = run(capsys, *args, "--concurrency", "2", "--json")
    assert code == 0, err
    assert sum(json.loads(stdout)["counts"].values()) == 3
    import anndata as ad

    record = ad.read_h5ad(out).uns["c2s"]["annotate"]
    assert record["model"] == f"{ALIAS} at {server}" and record["model_sha256"] == ""
    text = audit_log.read_text()
    assert KEY not in text
    assert json.loads(text.splitlines()[-1])["engine"] == server + "/v1"


def test_cli_model_or_server_exactly_one(capsys, tmp_path, server):
    out = tmp_path / "a.h5ad"
    for extra in ([], ["--model", MODEL, "--server", server]):
        code, _, err = run(capsys, "embed", DATA, "-o", out, *extra)
        assert code == 2 and err.startswith("error: give --model FILE or --server URL")
        assert len(err.strip().splitlines()) == 1


def test_cli_server_down_exits_2_with_one_line(capsys, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = run(capsys, "ask", DATA, "What cells?", "--server", url)
    assert code == 2
    assert err.startswith(f"error: cannot reach {url}: connection refused")
    assert len(err.strip().splitlines()) == 1
