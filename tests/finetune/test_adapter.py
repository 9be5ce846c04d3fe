"""LoRA adapters as GGUF: written from peft, checked against their base, applied by llama.cpp.

The oracle is transformers + peft on the same checkpoint and the same LoRA weights. The F32 base
GGUF holds the checkpoint's weights unchanged, yet llama.cpp and transformers already differ on
the base model alone (the engine keeps keys and values in an F16 cache, flash attention
accumulates in F16, float32 sums run in another order): up to 3.4e-3 nats on these ~10-nat
labels of up to 8 tokens, measured with flash attention on and off, with and without the
adapter. So the adapter's scores must agree within 5e-3 nats (5e-4 of a label's score), while
the adapter moves scores by far more. A Q8_0 base rounds every weight, so there only the best
label is compared.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from c2s_desktop.core.adapters import (
    adapters_for,
    check_adapter,
    describe,
    list_adapters,
    read_adapter,
)
from c2s_desktop.core.engine.base import EngineOptions, ModelFileError
from c2s_desktop.core.engine.local import LocalEngine
from c2s_desktop.core.engine.process import ProcessEngine, estimate_memory
from c2s_quantize.errors import QuantizeError
from c2s_quantize.lora import base_files, write_lora_gguf
from c2s_quantize.probes import load_probes
from tests.helpers import transformers_logprob
from tests.model_fixtures import ARCHS, THREADS

TOL_F32 = 5e-3  # nats: see the module docstring
TARGETS = {
    "gptneox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "gemma2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}
PROVENANCE = {
    "label_key": "lineage",
    "labels": ["B cell", "T cell"],
    "accuracy_before": 0.25,
    "accuracy_after": 0.75,
    "n_genes": 37,
}
OPTIONS = EngineOptions(n_ctx=512, threads=THREADS)


def make_peft(base_dir: Path, out_dir: Path, arch: str, **lora: Any) -> Any:
    """A LoRA on ``base_dir`` with random non-zero A and B (peft's ``init_lora_weights=False``),
    saved to ``out_dir``; returns the peft model (float32, eval mode)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(target_modules=TARGETS[arch], init_lora_weights=False, **lora)
    peft_model = get_peft_model(model, config).eval()
    with torch.no_grad():  # a moderate change: the adapter shifts scores without drowning them
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.mul_(0.2)
    peft_model.save_pretrained(out_dir)
    return peft_model


@pytest.fixture(scope="module")
def adapters(
    checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, Any]]:
    """Per architecture: (adapter GGUF, peft model). GPT-NeoX plain LoRA (alpha/r = 2, QKV
    regrouped); Gemma-2 rsLoRA (peft's alpha/sqrt(r), folded into lora_b for llama.cpp)."""
    torch.set_num_threads(THREADS)
    root = tmp_path_factory.mktemp("adapters")
    made = {}
    for arch, extra in (("gptneox", {}), ("gemma2", {"use_rslora": True})):
        peft_model = make_peft(checkpoints[arch], root / arch, arch, r=4, lora_alpha=8, **extra)
        out = write_lora_gguf(
            root / arch, checkpoints[arch], root / f"{arch}.lora.gguf", PROVENANCE
        )
        made[arch] = (out, peft_model)
    return made


def engine_scores(model: Path, adapter: Path | None) -> list[float]:
    probe = load_probes()[0]
    conts = [probe.continuation(label) for label in probe.labels]
    opts = EngineOptions(
        n_ctx=512, threads=THREADS, adapter=None if adapter is None else str(adapter)
    )
    with LocalEngine(model, opts) as engine:
        return [s.logprob for s in engine.score(probe.text, conts)]


@pytest.mark.parametrize("arch", ARCHS)
def test_adapter_scores_equal_peft(
    adapters: dict[str, tuple[Path, Any]],
    gguf: Callable[[str, str], Path],
    hf: Callable[[str], tuple[Any, Any]],
    arch: str,
) -> None:
    adapter, peft_model = adapters[arch]
    tok = hf(arch)[0]
    probe = load_probes()[0]
    conts = [probe.continuation(label) for label in probe.labels]
    ref = [transformers_logprob(tok, peft_model, probe.text, c) for c in conts]
    with peft_model.disable_adapter():
        ref_base = [transformers_logprob(tok, peft_model, probe.text, c) for c in conts]
    ours = engine_scores(gguf(arch, "f32"), adapter)
    base = engine_scores(gguf(arch, "f32"), None)
    diff = max(abs(a - b) for a, b in zip(ours, ref, strict=True))
    base_diff = max(abs(a - b) for a, b in zip(base, ref_base, strict=True))
    moved = max(abs(a - b) for a, b in zip(ours, base, strict=True))
    print(
        f"\n{arch}: |llama.cpp+LoRA - peft| = {diff:.2e} nats (base alone {base_diff:.2e}); "
        f"the adapter moves scores by up to {moved:.2f} nats"
    )
    assert diff < TOL_F32 and base_diff < TOL_F32
    assert moved > 50 * TOL_F32  # the adapter does something, and llama.cpp applies it
    q8 = engine_scores(gguf(arch, "q8_0"), adapter)
    assert int(np.argmax(q8)) == int(np.argmax(ref))


def test_adapter_scale_reaches_llama_cpp(
    adapters: dict[str, tuple[Path, Any]], gguf: Callable[[str, str], Path]
) -> None:
    probe = load_probes()[0]
    conts = [probe.continuation(label) for label in probe.labels[:2]]
    scores = []
    for scale in (0.0, 1.0):
        opts = EngineOptions(
            n_ctx=512, threads=THREADS, adapter=str(adapters["gptneox"][0]), adapter_scale=scale
        )
        with LocalEngine(gguf("gptneox", "f32"), opts) as engine:
            scores.append([s.logprob for s in engine.score(probe.text, conts)])
    base = engine_scores(gguf("gptneox", "f32"), None)[:2]
    assert np.allclose(scores[0], base, atol=1e-5)  # scale 0: the base model
    assert not np.allclose(scores[1], base, atol=1e-2)


def test_embeddings_use_the_adapter(adapters: dict[str, tuple[Path, Any]], gguf: Any) -> None:
    text = load_probes()[0].text
    with LocalEngine(gguf("gptneox", "f32"), OPTIONS) as plain:
        base = plain.embed([text])
    opts = EngineOptions(n_ctx=512, threads=THREADS, adapter=str(adapters["gptneox"][0]))
    with LocalEngine(gguf("gptneox", "f32"), opts) as tuned:
        with_adapter = tuned.embed([text])
        assert tuned.info.adapter == str(adapters["gptneox"][0])
    assert np.isfinite(with_adapter).all()
    assert np.abs(with_adapter - base).max() > 1e-3


def test_adapter_describes_itself(
    adapters: dict[str, tuple[Path, Any]], checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    path = adapters["gptneox"][0]
    info = read_adapter(path)
    assert (info.architecture, info.rank, info.alpha) == ("gptneox", 4, 8.0)
    assert (info.label_key, info.labels) == ("lineage", ("B cell", "T cell"))
    assert (info.accuracy_before, info.accuracy_after) == (0.25, 0.75)
    assert info.base_name == checkpoints["gptneox"].name
    assert info.base_files == base_files(checkpoints["gptneox"]) and len(info.base_files) >= 2
    assert "blk.0.attn_qkv.weight" in info.shapes and len(info.shapes) == 2 * 4
    assert info.provenance["labels"] == ["B cell", "T cell"]
    assert "held-out accuracy 25% → 75%" in describe(info)
    shutil.copy(path, tmp_path / "a.gguf")
    (tmp_path / "notes.gguf").write_bytes(b"not gguf")
    assert [a.path for a in list_adapters(tmp_path)] == [str(tmp_path / "a.gguf")]


def test_the_adapter_sets_the_genes_per_sentence_it_was_trained_on(
    adapters: dict[str, tuple[Path, Any]], gguf: Any
) -> None:
    from c2s_desktop.core.catalog import capabilities

    base = gguf("gptneox", "f32")
    with ProcessEngine(base, OPTIONS) as plain:
        assert capabilities(plain.info.metadata).n_genes != 37
    opts = dataclasses.replace(OPTIONS, adapter=str(adapters["gptneox"][0]))
    with ProcessEngine(base, opts) as tuned:
        assert tuned.info.adapter == str(adapters["gptneox"][0])
        assert capabilities(tuned.info.metadata).n_genes == 37


def test_wrong_base_is_one_clear_error(
    adapters: dict[str, tuple[Path, Any]], gguf: Callable[[str, str], Path]
) -> None:
    gemma_adapter = adapters["gemma2"][0]
    with pytest.raises(ModelFileError, match="was trained for gemma2, not .*architecture gemma2"):
        check_adapter(gemma_adapter, gguf("gptneox", "f32"))
    with pytest.raises(ModelFileError, match="was trained for"):
        ProcessEngine(gguf("gptneox", "f32"), EngineOptions(n_ctx=512, adapter=str(gemma_adapter)))
    assert adapters_for(gguf("gptneox", "f32"), gemma_adapter.parent) == [
        read_adapter(adapters["gptneox"][0])
    ]


def test_shape_and_hash_mismatch(
    adapters: dict[str, tuple[Path, Any]],
    checkpoints: dict[str, Path],
    gguf: Callable[[str, str], Path],
    tmp_path: Path,
) -> None:
    from c2s_quantize.pipeline import quantize_checkpoint
    from tests.quantize import quantize_builders as qb

    # Same architecture, other sizes: llama.cpp's shape check, before loading.
    other = tmp_path / "wide"
    qb.save_gptneox(other, 1024, hidden_size=128, intermediate_size=256)
    make_peft(other, tmp_path / "wide-peft", "gptneox", r=2, lora_alpha=2)
    wide = write_lora_gguf(tmp_path / "wide-peft", other, tmp_path / "wide.gguf", {})
    with pytest.raises(
        ModelFileError,
        match=r"wide.gguf was trained for wide, not .*tensor blk\.0\.\w+\.weight is \[256, 256\]",
    ):
        check_adapter(wide, gguf("gptneox", "f32"))
    # A base converted with file hashes: the right adapter passes, one of another base fails.
    hashed = tmp_path / "hashed.gguf"
    quantize_checkpoint(checkpoints["gptneox"], hashed, "f32", threads=THREADS)
    assert check_adapter(adapters["gptneox"][0], hashed).rank == 4
    retrained = tmp_path / "retrained"
    retrained.mkdir()
    shutil.copy(checkpoints["gptneox"] / "config.json", retrained)
    (retrained / "c2s_source.json").write_text(json.dumps({"source_files": ["0" * 64 + "  x"]}))
    stranger = write_lora_gguf(
        adapters["gptneox"][0].parent / "gptneox", retrained, tmp_path / "s.gguf", {}
    )
    assert read_adapter(stranger).base_files == ("0" * 64 + "  x",)
    with pytest.raises(ModelFileError, match="file hashes differ"):
        check_adapter(stranger, hashed)
    check_adapter(stranger, gguf("gptneox", "f32"))  # no hashes in the base: not compared


def test_bad_adapter_files(
    adapters: dict[str, tuple[Path, Any]],
    gguf: Callable[[str, str], Path],
    tmp_path: Path,
) -> None:
    with pytest.raises(ModelFileError, match="not a LoRA adapter"):
        read_adapter(gguf("gptneox", "f32"))
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(adapters["gptneox"][0].read_bytes()[:-1000])
    with pytest.raises(ModelFileError, match="truncated"):
        read_adapter(cut)
    with pytest.raises(ModelFileError, match="not found"):
        read_adapter(tmp_path / "missing.gguf")
    info = read_adapter(adapters["gptneox"][0])
    weights, _ = estimate_memory(read_model(gguf("gptneox", "f32")), OPTIONS)
    with_adapter, _ = estimate_memory(
        read_model(gguf("gptneox", "f32")), EngineOptions(n_ctx=512, adapter=info.path)
    )
    assert with_adapter - weights == info.size_bytes


def read_model(path: Path) -> Any:
    from c2s_desktop.core.models import validate_gguf

    return validate_gguf(path)


def test_writer_refuses_what_llama_cpp_cannot_apply(
    adapters: dict[str, tuple[Path, Any]], checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "x.gguf"
    with pytest.raises(QuantizeError, match="adapter_config.json"):
        write_lora_gguf(tmp_path, checkpoints["gptneox"], out, {})
    peft_dir = tmp_path / "dora"
    shutil.copytree(adapters["gptneox"][0].parent / "gptneox", peft_dir)
    config = json.loads((peft_dir / "adapter_config.json").read_text())
    (peft_dir / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(QuantizeError, match="DoRA"):
        write_lora_gguf(peft_dir, checkpoints["gptneox"], out, {})
    assert not out.exists() and not list(tmp_path.glob(".*c2s-tmp*"))


# -- the c2s command ---------------------------------------------------------------------------
def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    """``c2s ARGS`` in-process: (exit code, stderr)."""
    from c2s_desktop.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
        raise SystemExit(0)
    return int(exit_info.value.code or 0), capsys.readouterr().err


def test_cli_annotate_with_adapter_records_it(
    capsys: pytest.CaptureFixture[str],
    adapters: dict[str, tuple[Path, Any]],
    gguf: Callable[[str, str], Path],
    tmp_path: Path,
) -> None:
    import anndata as ad

    from c2s_desktop.core.models import sha256_file
    from c2s_desktop.core.resources import resource_path

    data = resource_path("demo", "pbmc_demo.h5ad")
    adapter, out = adapters["gptneox"][0], tmp_path / "a.h5ad"
    common = ("annotate", data, "--model", gguf("gptneox", "f32"), "--n-genes", "20")
    mode = ("--candidates-from", "cell_type", "--cluster-key", "louvain", "--mode")
    code, err = run_cli(
        capsys,
        *common,
        "--adapter",
        adapter,
        "-o",
        out,
        *mode,
        "representative",
        "--per-cluster",
        1,
        "--threads",
        1,
    )
    assert code == 0, err
    record = ad.read_h5ad(out).uns["c2s"]["annotate"]
    assert record["adapter"] == str(adapter)
    assert record["adapter_sha256"] == sha256_file(adapter)
    # An adapter of another base: one line, exit 2, nothing written.
    wrong = tmp_path / "b.h5ad"
    code, err = run_cli(capsys, *common, "--adapter", adapters["gemma2"][0], "-o", wrong)
    assert code == 2 and "was trained for gemma2" in err and len(err.strip().splitlines()) == 1
    assert not wrong.exists()
    code, err = run_cli(
        capsys, "ask", data, "hello", "--server", "http://127.0.0.1:9", "--adapter", adapter
    )
    assert code == 2 and "--adapter applies to a local --model" in err
    assert len(err.strip().splitlines()) == 1
