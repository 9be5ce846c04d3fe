"""The local model store: listing with provenance, cached hashes, import, remove, catalogue,
conversion of a local checkpoint (the download pipeline without the download)."""

from __future__ import annotations

import os
import threading

import pytest

from c2s_desktop.core.engine.base import ModelFileError
from c2s_desktop.core.errors import Cancelled, OutputError
from c2s_desktop.core.model_store import (
    ModelStoreError,
    cached_sha256,
    catalog_models,
    convert_checkpoint,
    demo_model_path,
    download_checkpoint,
    import_model,
    list_models,
    models_dir,
    output_name,
    remove_model,
)
from tests.conftest import sha256

DEMO = demo_model_path()


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty models folder, and an empty sha256 cache (it sits beside the audit log)."""
    folder = tmp_path / "models"
    monkeypatch.setenv("C2S_MODELS_DIR", str(folder))
    monkeypatch.setenv("C2S_AUDIT_LOG", str(tmp_path / "audit" / "audit.jsonl"))
    return folder


def test_demo_model_is_listed_first_even_without_a_folder(store):
    assert not store.exists()
    models = list_models()
    assert [m.path for m in models] == [DEMO]
    demo = models[0]
    assert demo.bundled and not demo.problem and demo.quant == "Q8_0"
    assert demo.info is not None and demo.info.architecture == "gptneox"
    assert demo.sha256 is None  # not hashed unless asked


def test_hash_is_cached_by_size_and_mtime(store, tmp_path):
    from c2s_desktop.core import audit

    model = import_model(DEMO)
    assert model.sha256 == sha256(DEMO)
    # one cache for the whole app: the audit log and provenance find the model's hash in it
    assert audit.cached_sha256_only(model.path) == model.sha256
    assert list_models()[1].sha256 == model.sha256  # listed from the cache, not hashed again
    # a changed file (same name, new mtime) is not served from the cache: hashed again
    os.utime(model.path, ns=(1, 1))
    assert audit.cached_sha256_only(model.path) is None and list_models()[1].sha256 is None
    assert cached_sha256(model.path) == sha256(DEMO)
    assert list_models(with_hashes=True)[1].sha256 == sha256(DEMO)


def test_import_copies_atomically_and_keeps_the_original(store, tmp_path):
    src = tmp_path / "mine.q8_0.gguf"
    src.write_bytes(DEMO.read_bytes())
    before = sha256(src)
    seen: list[float] = []
    model = import_model(src, progress=lambda f, m: seen.append(f))
    assert model.path == store / "mine.q8_0.gguf" and src.exists() and sha256(src) == before
    assert model.sha256 == before and seen[-1] == 1.0
    assert [p.name for p in store.iterdir() if p.suffix == ".gguf"] == ["mine.q8_0.gguf"]
    listed = list_models()
    assert [m.path.name for m in listed] == [DEMO.name, "mine.q8_0.gguf"]
    assert listed[1].source == "c2s-desktop/demo-pbmc-tiny"  # provenance from the metadata
    with pytest.raises(OutputError, match="already in the models folder"):
        import_model(src)


def test_import_refuses_a_bad_file_and_copies_nothing(store, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 20)
    with pytest.raises(ModelFileError):
        import_model(bad)
    assert not (store / "bad.gguf").exists()
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="not a GGUF"):
        import_model(text)


def test_cancelled_import_leaves_no_file(store, tmp_path):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        import_model(DEMO, cancel=cancel)
    assert not any(p.name.endswith(".gguf") or p.name.endswith(".part") for p in store.iterdir())


def test_invalid_file_in_the_folder_is_listed_with_its_problem(store):
    store.mkdir()
    (store / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
    broken = list_models()[-1]
    assert broken.path.name == "broken.gguf" and broken.info is None and broken.problem


def test_remove_only_inside_the_folder(store):
    model = import_model(DEMO)
    with pytest.raises(ModelStoreError, match="inside the models folder"):
        remove_model(DEMO)
    assert DEMO.exists()
    remove_model(model.path)
    assert not model.path.exists() and [m.path for m in list_models()] == [DEMO]


def test_models_dir_override(store):
    assert models_dir() == store


def test_catalogue_has_sizes_tasks_and_licences():
    models = {m.repo: m for m in catalog_models()}
    m = models["vandijklab/C2S-Pythia-410m-cell-type-prediction"]
    assert m.parameters == 405334016 and m.download_gb == pytest.approx(1.62)
    assert m.gguf_gb["Q8_0"] == pytest.approx(0.431) and set(m.gguf_gb) >= {"F16", "Q4_K_M"}
    assert "annotate" in m.tasks and m.license.startswith("CC BY-NC-ND")
    assert models["vandijklab/C2S-Scale-Gemma-2-27B"].gguf_gb["Q4_K_M"] > 10
    assert output_name(m.repo, "Q4_K_M") == "C2S-Pythia-410m-cell-type-prediction.q4_k_m.gguf"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny untrained GPT-NeoX checkpoint (BPE tokenizer), as the quantize tests build."""
    pytest.importorskip("torch")
    from tests.quantize import quantize_builders as qb

    folder = tmp_path_factory.mktemp("ckpt") / "tiny-neox"
    n_vocab = qb.train_bpe_tokenizer(folder, vocab_size=400)
    qb.save_gptneox(folder, n_vocab, num_hidden_layers=1)
    return folder


def test_convert_local_checkpoint_into_the_store(store, checkpoint):
    seen: list[tuple[float, str]] = []
    model = convert_checkpoint(checkpoint, "q8_0", progress=lambda f, m: seen.append((f, m)))
    assert model.path == store / "tiny-neox.q8_0.gguf" and not model.problem
    assert model.quant == "Q8_0" and model.sha256 == sha256(model.path)
    assert model.info is not None and model.info.metadata["c2s.source_folder"]
    assert seen and seen[-1][0] == pytest.approx(1.0)
    with pytest.raises(OutputError, match="already in the models folder"):
        convert_checkpoint(checkpoint, "q8_0")
    # the download entry point with a local folder is the same pipeline without the download
    again = download_checkpoint(str(checkpoint), "f16")
    assert again.path.name == "tiny-neox.f16.gguf" and again.quant == "F16"


def test_cancelled_conversion_leaves_nothing(store, checkpoint):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        convert_checkpoint(checkpoint, "q4_0", cancel=cancel)
    assert not list(store.glob("*q4_0*"))


def test_bad_checkpoint_folder_is_a_clear_error(store, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelStoreError) as info:
        convert_checkpoint(tmp_path / "empty", "q8_0")
    assert "config.json" in info.value.one_line()
