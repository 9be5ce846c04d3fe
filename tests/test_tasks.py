"""Every C2S task end to end on the demo model (real llama.cpp inference on a real GGUF)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from c2s_desktop.core.dataset import open_dataset
from c2s_desktop.core.engine.base import EngineOptions
from c2s_desktop.core.engine.local import LocalEngine
from c2s_desktop.core.prompts import (
    CELL_TYPE_PREDICTION,
    Template,
    label_continuation,
    prompt_values,
    template,
)
from c2s_desktop.core.resources import resource_path
from c2s_desktop.core.sentences import cell_sentences
from c2s_desktop.core.tasks.annotate import (
    MODE_PER_CELL,
    MODE_REPRESENTATIVE,
    AnnotateOptions,
    annotate,
)
from c2s_desktop.core.tasks.chat import AskOptions, ask
from c2s_desktop.core.tasks.custom import CustomOptions, run_template
from c2s_desktop.core.tasks.embed import EmbedOptions, embed_cells
from c2s_desktop.core.tasks.generate import GenerateOptions, generate_cells
from c2s_desktop.core.tasks.summarize import SummarizeOptions, summarize

DEMO_MODEL = resource_path("demo", "c2s-demo-pbmc.q8_0.gguf")
DEMO_DATA = resource_path("demo", "pbmc_demo.h5ad")


@pytest.fixture(scope="module")
def engine():
    # One thread: two spin-wait for a core on a busy 2-core box (the tiny model runs ~9x slower).
    with LocalEngine(DEMO_MODEL, EngineOptions(n_ctx=1024, threads=1)) as e:
        yield e


@pytest.fixture(scope="module")
def ds():
    with open_dataset(DEMO_DATA) as d:
        yield d


@pytest.fixture(scope="module")
def held_out():
    split = json.loads(resource_path("demo", "demo_split.json").read_text())
    return np.array(split["test"])


def test_per_cell_annotation_scores_candidates_and_beats_baseline(ds, engine, held_out):
    rows = held_out[::3]
    truth = ds.obs["cell_type"].astype(str).to_numpy()[rows]
    labels = tuple(sorted(ds.obs["cell_type"].astype(str).unique()))
    res = annotate(ds, engine, AnnotateOptions(candidates=labels, mode=MODE_PER_CELL, rows=rows))
    assert set(res.labels) <= set(labels) and len(res.labels) == len(rows)
    assert np.allclose(res.scored_probs.sum(axis=1), 1.0)
    assert np.all(res.probability == res.scored_probs.max(axis=1).astype(np.float32))
    # probabilities are the softmax of the engine's own label log-likelihoods
    sentence = cell_sentences(ds, rows[:1], top_k=200)[0]
    prompt = template(CELL_TYPE_PREDICTION).format(
        **prompt_values(organism=ds.organism, n_genes=200, sentence=sentence)
    )
    lp = np.array(
        [s.logprob for s in engine.score(prompt, [label_continuation(c) for c in labels])]
    )
    expected = np.exp(lp - lp.max()) / np.exp(lp - lp.max()).sum()
    np.testing.assert_allclose(res.scored_probs[0], expected, rtol=1e-6)
    baseline = max(np.mean(truth == c) for c in labels)
    accuracy = np.mean(res.labels.astype(str) == truth)
    print(
        f"demo model accuracy on {len(rows)} held-out cells: {accuracy:.2f} "
        f"(baseline {baseline:.2f})"
    )
    assert accuracy > baseline + 0.2


def test_representative_annotation_labels_every_cell(ds, engine):
    res = annotate(
        ds,
        engine,
        AnnotateOptions(
            candidates_from="cell_type",
            mode=MODE_REPRESENTATIVE,
            cluster_key="louvain",
            per_cluster=2,
        ),
    )
    n_clusters = ds.obs["louvain"].nunique()
    assert len(res.scored_rows) == 2 * n_clusters
    assert len(res.labels) == ds.n_cells and np.all((res.probability > 0) & (res.probability <= 1))
    assert set(res.cluster_agreement) == set(ds.obs["louvain"].astype(str).unique())
    # a scored cell keeps (almost exactly) its own prediction after propagation
    first = int(np.flatnonzero(res.rows == res.scored_rows[0])[0])
    assert res.labels[first] == res.candidates[int(res.scored_probs[0].argmax())]


def test_candidates_from_the_models_own_answers(ds, engine):
    res = annotate(
        ds, engine, AnnotateOptions(rows=np.arange(0, 40, 4), mode=MODE_PER_CELL, discover_cells=6)
    )
    assert res.candidates and all(c.strip() == c and c for c in res.candidates)


def test_summarize_warns_and_streams(ds, engine):
    pieces: list[str] = []
    rows = np.flatnonzero(ds.obs["cell_type"].astype(str).to_numpy() == "CD19+ B")
    res = summarize(ds, engine, SummarizeOptions(rows=rows, n_cells=3), on_token=pieces.append)
    assert any("not trained" in w for w in res.warnings)
    # 3 cells x 200 genes do not fit the demo model's 1024-token context: genes are trimmed
    assert any("shortened" in w for w in res.warnings)
    assert len(engine.tokenize(res.prompt)) + 256 <= 1024
    assert "".join(pieces).strip() == res.text
    assert res.markers and res.markers[0].mean_in > res.markers[0].mean_out
    assert "Cell 3:" in res.prompt and res.prompt.endswith("Abstract summary:")


def test_ask_keeps_history(ds, engine):
    first = ask(ds, engine, "What cells are these?", AskOptions(rows=np.arange(5)))
    second = ask(
        ds, engine, "Anything unusual?", AskOptions(rows=np.arange(5), history=first.history)
    )
    assert len(second.history) == 2 and second.history[0].question == "What cells are these?"
    assert "Question: What cells are these?\nAnswer:" in second.prompt


def test_generate_cells_returns_expression(ds, engine):
    res = generate_cells(ds, engine, GenerateOptions(cell_type="CD14+ Monocyte", n_cells=3))
    assert res.adata.shape == (3, ds.vocabulary.n_words)
    assert res.valid_fraction > 0.5
    assert res.adata.X.max() > 0 and (res.adata.X.toarray() >= 0).all()


def test_embed_is_deterministic(ds, engine):
    a = embed_cells(ds, engine, EmbedOptions(rows=np.arange(6)))
    b = embed_cells(ds, engine, EmbedOptions(rows=np.arange(6)))
    assert a.embedding.shape == (6, engine.info.n_embd) and np.isfinite(a.embedding).all()
    np.testing.assert_allclose(a.embedding, b.embedding, rtol=1e-5, atol=1e-6)
    assert a.layout.shape == (6, 2)


def test_custom_template(ds, engine):
    tmpl = Template("custom/t", "custom", "Cell sentence: {cell_sentence}.\nCell type:", "")
    res = run_template(ds, engine, CustomOptions(template=tmpl, rows=np.arange(3), n_genes=20))
    assert len(res.answers) == 3 and res.prompts[0].startswith("Cell sentence: ")


def test_per_cell_prompt_longer_than_the_context_is_shortened(ds):
    """A 200-gene prompt does not fit 256 tokens: the top genes that fit are kept (warning)."""
    labels = tuple(sorted(ds.obs["cell_type"].astype(str).unique()))
    rows = np.arange(3)
    with LocalEngine(DEMO_MODEL, EngineOptions(n_ctx=256, threads=2)) as small:
        full = template(CELL_TYPE_PREDICTION).format(
            **prompt_values(
                organism=ds.organism, n_genes=200, sentence=cell_sentences(ds, rows[:1])[0]
            )
        )
        assert len(small.tokenize(full)) > 256  # the premise: the whole prompt cannot fit
        res = annotate(ds, small, AnnotateOptions(candidates=labels, mode=MODE_PER_CELL, rows=rows))
    assert len(res.labels) == 3 and set(res.labels) <= set(labels)
    shortened = [w for w in res.warnings if "shortened" in w]
    assert len(shortened) == 1 and "3 cell prompts" in shortened[0] and "256 tokens" in shortened[0]
    fewest = int(shortened[0].split("as few as ")[1].split()[0])
    assert 20 <= fewest < 200


def test_representative_mode_uses_leiden_clusters_of_a_prepared_file(tmp_path, engine):
    """No --cluster-key: a file with obs['leiden'] is clustered by it, not by k-means."""
    from c2s_desktop.core.preprocess import PreprocessOptions, preprocess_file
    from c2s_desktop.core.tasks.annotate import CLUSTERS_KMEANS, scored_cell_count

    prepared = preprocess_file(DEMO_DATA, tmp_path / "prepared.h5ad", PreprocessOptions()).output
    with open_dataset(prepared) as ds:
        opts = AnnotateOptions(candidates=("B cell", "T cell"), mode=MODE_REPRESENTATIVE)
        res = annotate(ds, engine, dataclasses.replace(opts, per_cluster=1))
        leiden = ds.obs["leiden"].astype(str).to_numpy()
        assert res.cluster_source == "obs['leiden']"
        assert np.array_equal(res.clusters, leiden)
        assert len(res.scored_rows) == len(set(leiden))
        sizes = ds.obs["leiden"].value_counts()
        assert scored_cell_count(ds, opts) == sum(min(5, n) for n in sizes)
        kmeans = dataclasses.replace(opts, cluster_key=CLUSTERS_KMEANS, per_cluster=1)
        assert annotate(ds, engine, kmeans).cluster_source.startswith("k-means")
