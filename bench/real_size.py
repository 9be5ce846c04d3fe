"""Real-size shapes: conversion, per-cell annotation and generation of the released C2S models.

For Pythia-410m, Pythia-1b and Gemma-2-2B (shapes from the package's catalogue,
``c2s_quantize/data/catalog.json``; the few settings it does not hold are the base models'
own, see SHAPES), writes a checkpoint with random weights the way the release is stored
(safetensors, its dtype; Gemma-2-2B in two shards with an index), tensor by tensor, with a
tokenizer of the real vocabulary size:

* Pythia: the GPT-NeoX-20B BPE every C2S-Pythia model uses, rebuilt as ``tokenizer.json`` from
  ``vendor/llama.cpp/models/ggml-vocab-gpt-neox.gguf`` of the llama-cpp-python sdist (fetched
  with ``pip download`` unless ``--sdist`` names it);
* Gemma-2: a SentencePiece model of exactly 256,000 pieces (a small BPE trained on the gene
  names and prompts, byte fallback, then filler pieces text never produces).

Then, one heavy step at a time:

1. ``c2s-quantize`` to each type (under ``nice -n 10``): wall time and peak RSS of the converter
   process tree (``wait4``);
2. per type, at normal priority, in a child process: ``ProcessEngine`` with the default
   ``EngineOptions`` scores the 10 candidate labels after the per-cell prompt (template 0,
   200 genes of a demo cell) for ``--cells`` cells (s/cell), then greedy generation of 32
   tokens (tokens/s); peak RSS of the model process.

Prints one table with the CPU (lscpu model name and flags, the loaded CPU variant) and the load
average before and after each step. Multi-GB files live in one scratch folder outside the
checkout, deleted at the end (``--keep`` keeps them; finished steps are then reused).

    python bench/real_size.py                       # all three shapes (~20 min, 2 idle cores)
    python bench/real_size.py --shapes pythia-410m  # one shape
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import resource
import shutil
import struct
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.machine import cpu_line, load_average  # noqa: E402
from c2s_desktop.core.recommend import LABELS  # noqa: E402  (the standard ten PBMC labels)

SCRATCH = Path(os.environ.get("C2S_REAL_SIZE_DIR", "/tmp/c2s-real-size"))
DEMO = ROOT / "resources" / "demo" / "pbmc_demo.h5ad"
N_GENES, GEN_TOKENS = 200, 32
VOCAB_MEMBER = "vendor/llama.cpp/models/ggml-vocab-gpt-neox.gguf"
GEMMA_VOCAB, GEMMA_TRAINED_PIECES = 256_000, 1000


@dataclass(frozen=True)
class Shape:
    """One released model's shape; ``extra`` holds what the catalogue does not record."""

    key: str
    hf_repo: str
    dtype: str  # safetensors dtype as released
    shards: int
    extra: dict[str, Any]


# Catalogue entries by repo id; dtypes: Pythia-410m F32 (its model page), Gemma-2-2B BF16 (two
# shards, as the catalogue notes), Pythia-1b unverified there: F32 like the other C2S-Pythia
# releases. ``extra``: the base models' own config values (EleutherAI/pythia-*, google/gemma-2-2b).
SHAPES = {
    s.key: s
    for s in (
        Shape(
            "pythia-410m",
            "vandijklab/C2S-Pythia-410m-cell-type-prediction",
            "F32",
            1,
            {"rotary_emb_base": 10000, "layer_norm_eps": 1e-5, "max_position_embeddings": 8192},
        ),
        Shape(
            "pythia-1b",
            "vandijklab/C2S-Scale-Pythia-1b-pt",
            "F32",
            1,
            {"rotary_emb_base": 10000, "layer_norm_eps": 1e-5},
        ),
        Shape(
            "gemma-2-2b",
            "vandijklab/C2S-Scale-Gemma-2-2B",
            "BF16",
            2,
            {"rope_theta": 10000.0, "rms_norm_eps": 1e-6, "hidden_activation": "gelu_pytorch_tanh"},
        ),
    )
}
DEFAULT_TYPES = {
    "pythia-410m": ("f16", "q8_0", "q4_0", "iq4_nl"),
    "pythia-1b": ("f16", "q8_0", "q4_0", "iq4_nl"),
    "gemma-2-2b": ("f16", "q8_0", "q4_0"),
}


# -- checkpoint ----------------------------------------------------------------------------------
def hf_config(shape: Shape) -> Any:
    """The transformers config of a shape, from the catalogue record."""
    from transformers import Gemma2Config, GPTNeoXConfig

    from c2s_quantize.catalog import find_model

    entry = find_model(shape.hf_repo)
    if entry is None:
        raise SystemExit(f"{shape.hf_repo} is not in the catalogue")
    m = entry.raw
    common = dict(
        vocab_size=m["vocab_size"],
        hidden_size=m["hidden_size"],
        num_hidden_layers=m["num_layers"],
        num_attention_heads=m["num_attention_heads"],
        intermediate_size=m["intermediate_size"],
        tie_word_embeddings=m["tied_embeddings"],
        max_position_embeddings=m.get("context_length") or 2048,
    )
    common |= shape.extra
    if m["architecture"] == "GPTNeoXForCausalLM":
        config = GPTNeoXConfig(
            **common,
            rotary_pct=m["rotary_pct"],
            use_parallel_residual=m["parallel_residual"],
            bos_token_id=0,
            eos_token_id=0,
        )
    else:
        config = Gemma2Config(
            **common,
            num_key_value_heads=m["num_kv_heads"],
            head_dim=m["head_dim"],
            sliding_window=m["sliding_window"],
            attn_logit_softcapping=m["attn_logit_softcapping"],
            final_logit_softcapping=m["final_logit_softcapping"],
            query_pre_attn_scalar=m["query_pre_attn_scalar"],
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=2,
        )
    config.architectures = [m["architecture"]]
    config.dtype = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}[shape.dtype]
    return config


def tensor_shapes(config: Any) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the saved tensors (model built on the meta device: no memory)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    names = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if config.tie_word_embeddings:
        names.pop("lm_head.weight", None)
    return names


class RandomSource:
    """Normal(0, 0.02) weights cut from one random pool at random offsets (fast, low memory)."""

    POOL = 1 << 22

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        f32 = (self.rng.standard_normal(self.POOL, dtype=np.float32) * 0.02).astype(np.float32)
        bits = f32.view(np.uint32)
        self.pools = {
            "F32": f32,
            "F16": f32.astype(np.float16),
            "BF16": ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16),
        }

    def chunks(self, n: int, dtype: str) -> Any:
        pool = self.pools[dtype]
        while n > 0:
            size = min(n, self.POOL // 2)
            start = int(self.rng.integers(0, self.POOL - size))
            yield pool[start : start + size]
            n -= size


def ones(n: int, dtype: str) -> np.ndarray:
    one = np.ones(n, np.float32)
    if dtype == "BF16":
        return (one.view(np.uint32) >> 16).astype(np.uint16)
    return one.astype(np.float16 if dtype == "F16" else np.float32)


def write_safetensors(path: Path, tensors: dict[str, tuple[int, ...]], dtype: str, neox: bool):
    """One safetensors file written tensor by tensor (header first, then the data)."""
    width = 4 if dtype == "F32" else 2
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in tensors.items():
        size = math.prod(shape) * width
        header[name] = {
            "dtype": dtype,
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    source = RandomSource(seed=len(tensors) + offset % 9973)
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for name, shape in tensors.items():
            n = math.prod(shape)
            if neox and name.endswith(("layernorm.weight", "final_layer_norm.weight")):
                f.write(ones(n, dtype).tobytes())
                continue
            for chunk in source.chunks(n, dtype):
                f.write(chunk.tobytes())
    tmp.replace(path)
    return offset


def write_checkpoint(shape: Shape, folder: Path, sdist: Path | None) -> None:
    """config.json, tokenizer and random weights of ``shape`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    config = hf_config(shape)
    neox = config.architectures[0] == "GPTNeoXForCausalLM"
    if neox:
        write_neox_tokenizer(folder, sdist or fetch_sdist())
    else:
        write_gemma_tokenizer(folder)
    tensors = tensor_shapes(config)
    names = list(tensors)
    if shape.shards == 1:
        write_safetensors(folder / "model.safetensors", tensors, shape.dtype, neox)
    else:
        width = 4 if shape.dtype == "F32" else 2
        sizes = [math.prod(tensors[n]) * width for n in names]
        total, cut, acc = sum(sizes), len(names), 0
        bounds, start = [], 0
        for i, size in enumerate(sizes):  # split by bytes, in order
            acc += size
            if acc >= total * (len(bounds) + 1) / shape.shards and len(bounds) < shape.shards - 1:
                bounds.append((start, i + 1))
                start = i + 1
        bounds.append((start, cut))
        weight_map = {}
        for k, (a, b) in enumerate(bounds, start=1):
            file = f"model-{k:05d}-of-{shape.shards:05d}.safetensors"
            part = {n: tensors[n] for n in names[a:b]}
            write_safetensors(folder / file, part, shape.dtype, neox)
            weight_map |= dict.fromkeys(part, file)
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    config.to_json_file(folder / "config.json")  # last: its presence marks a finished folder


# -- tokenizers ----------------------------------------------------------------------------------
def fetch_sdist() -> Path:
    """The llama-cpp-python sdist of the installed version (``pip download``, cached)."""
    version = importlib.metadata.version("llama-cpp-python")
    folder = SCRATCH / "sdist"
    found = sorted(folder.glob(f"llama_cpp_python-{version}.tar.gz"))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}"]
    cmd += ["--no-deps", "--no-binary", ":all:", "--quiet", "-d", str(folder)]
    subprocess.run(cmd, check=True)
    return next(folder.glob(f"llama_cpp_python-{version}.tar.gz"))


def write_neox_tokenizer(folder: Path, sdist: Path) -> None:
    """Pythia's tokenizer.json rebuilt from llama.cpp's GPT-NeoX vocabulary GGUF."""
    from gguf import GGUFReader, TokenType

    vocab_file = SCRATCH / "ggml-vocab-gpt-neox.gguf"
    if not vocab_file.exists():
        with tarfile.open(sdist) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith(VOCAB_MEMBER))
            vocab_file.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
    reader = GGUFReader(vocab_file)

    def strings(key: str) -> list[str]:
        field = reader.fields[key]
        return [bytes(field.parts[i]).decode("utf-8") for i in field.data]

    tokens, merges = strings("tokenizer.ggml.tokens"), strings("tokenizer.ggml.merges")
    field = reader.fields["tokenizer.ggml.token_type"]
    types = [int(field.parts[i][0]) for i in field.data]
    vocab, added = {}, []
    for i, (text, kind) in enumerate(zip(tokens, types, strict=True)):
        if kind == TokenType.NORMAL:
            vocab[text] = i
        elif kind == TokenType.CONTROL:
            vocab[text] = i
            added.append({"id": i, "content": text, "special": True})
        elif kind == TokenType.USER_DEFINED and not text.startswith("[PAD"):
            added.append({"id": i, "content": text, "special": False})
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True}
    tokenizer = {
        "version": "1.0",
        "added_tokens": [
            a | {"single_word": False, "lstrip": False, "rstrip": False, "normalized": True}
            for a in added
        ],
        "normalizer": None,
        "pre_tokenizer": byte_level | {"use_regex": True},
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {"type": "BPE", "vocab": vocab, "merges": merges, "dropout": None},
    }
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
    special = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}
    (folder / "tokenizer_config.json").write_text(
        json.dumps(special | {"unk_token": "<|endoftext|>", "add_bos_token": False})
    )


def _piece_message(text: str, score: float, kind: int) -> bytes:
    """One ``SentencePiece {1: piece, 2: score, 3: type}`` as field 1 of ModelProto."""

    def varint(n: int) -> bytes:
        out = b""
        while True:
            byte, n = n & 0x7F, n >> 7
            out += bytes([byte | (0x80 if n else 0)])
            if not n:
                return out

    raw = text.encode("utf-8")
    body = b"\x0a" + varint(len(raw)) + raw + b"\x15" + struct.pack("<f", score)
    body += b"\x18" + varint(kind)
    return b"\x0a" + varint(len(body)) + body


def write_gemma_tokenizer(folder: Path) -> None:
    """A 256,000-piece SentencePiece model like Gemma's (pad 0, eos 1, bos 2, unk 3, bytes)."""
    import sentencepiece as spm

    from c2s_desktop.core.dataset import open_dataset
    from c2s_desktop.core.prompts import templates
    from tests.quantize.quantize_builders import sentencepiece_model

    genes = list(open_dataset(DEMO).vocabulary.words)
    texts = [t.text for t in templates("cell_type_prediction")] + [f" {x}." for x in LABELS]
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.permutation(genes)[:200]) for _ in range(50)]
    model = sentencepiece_model(
        folder, texts * 20 + lines, GEMMA_TRAINED_PIECES, hard_vocab_limit=False
    )
    n = spm.SentencePieceProcessor(model_file=str(model)).get_piece_size()
    # Filler pieces in a private-use script: never produced from text, as Gemma's many
    # pieces of other scripts never are from gene names.
    filler = b"".join(_piece_message(f"\ue000{i:06x}", -1e6 - i, 1) for i in range(GEMMA_VOCAB - n))
    model.write_bytes(model.read_bytes() + filler)
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "bos_token": "<bos>",
                "eos_token": "<eos>",
                "unk_token": "<unk>",
                "pad_token": "<pad>",
                "add_bos_token": True,
            }
        )
    )


# -- measuring -----------------------------------------------------------------------------------


def backend_line() -> str:
    code = "from c2s_desktop.core.engine.backend import backend_info as b; print(b().summary())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def make_prompts(n_cells: int) -> list[str]:
    """Template 0 of the cell-type prompts with 200-gene sentences of the demo cells."""
    from c2s_desktop.core.dataset import open_dataset
    from c2s_desktop.core.prompts import prompt_values, template
    from c2s_desktop.core.sentences import cell_sentences

    sentences = cell_sentences(open_dataset(DEMO), rows=np.arange(n_cells), top_k=N_GENES)
    tmpl = template("cell_type_prediction")
    return [
        tmpl.format(**prompt_values(organism="Homo sapiens", n_genes=N_GENES, sentence=s))
        for s in sentences
    ]


def convert(ckpt: Path, out: Path, qtype: str, log: Path) -> dict[str, Any]:
    """``c2s-quantize`` under nice 10: wall seconds and peak RSS of its process tree."""
    exe = Path(sys.executable).with_name("c2s-quantize")
    cmd = [str(exe), str(ckpt), "-o", str(out), "--type", qtype, "--yes"]
    before = load_average()
    start = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, preexec_fn=_nice)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"c2s-quantize {qtype} failed:\n{log.read_text()[-3000:]}")
    return {
        "convert_s": seconds,
        "convert_peak_mb": usage.ru_maxrss / 1024,
        "size_mb": out.stat().st_size / 1e6,
        "load_convert": f"{before} -> {load_average()}",
    }


def _nice() -> None:
    os.nice(10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child(model: str, prompts_file: str) -> None:
    """In a child process: score every prompt's labels, then generate; print the figures."""
    from c2s_desktop.core.engine.base import EngineOptions, GenerateParams
    from c2s_desktop.core.engine.process import ProcessEngine

    prompts = json.loads(Path(prompts_file).read_text())
    conts = [f" {label}." for label in LABELS]
    start = time.perf_counter()
    with ProcessEngine(model, EngineOptions()) as engine:
        load_s = time.perf_counter() - start
        pid = engine.pid or 0
        times, cpu, best = [], [], []
        for prompt in prompts:
            start, cpu0 = time.perf_counter(), cpu_seconds(pid)
            scores = engine.score(prompt, conts)
            times.append(time.perf_counter() - start)
            cpu.append(cpu_seconds(pid) - cpu0)
            best.append(max(range(len(scores)), key=lambda i: scores[i].logprob))
        n_prompt = sum(len(engine.tokenize(p)) for p in prompts) / len(prompts)
        short = prompts[0][:200]
        engine.generate(short, GenerateParams(max_tokens=4))  # warm-up
        cpu0 = cpu_seconds(pid)
        gen = engine.generate(short, GenerateParams(max_tokens=GEN_TOKENS))
        gen_cpu = cpu_seconds(pid) - cpu0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the model process
    result = {
        "s_per_cell": times,
        "cpu_s_per_cell": cpu,
        "gen_cpu_s": gen_cpu,
        "load_s": load_s,
        "n_prompt_tokens": n_prompt,
        "gen_tokens": gen.n_tokens,
        "tokens_per_s": gen.n_tokens / gen.seconds,
        "model_rss_mb": rss,
        "best_label": best,
    }
    print("@result " + json.dumps(result), flush=True)


def infer(model: Path, prompts_file: Path) -> dict[str, Any]:
    before = load_average()
    cmd = [sys.executable, __file__, "--child", str(model), str(prompts_file)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("@result ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{model.name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("@result ")) | {
        "load_infer": f"{before} -> {load_average()}"
    }


# -- report --------------------------------------------------------------------------------------
def table(results: dict[str, dict[str, Any]]) -> str:
    rows = [
        "| shape | type | GGUF MB | convert s | convert peak RSS MB | prompt tokens "
        "| s/cell (mean / min, cells) | CPU s/cell (mean / min) "
        "| load s | gen tokens/s | model RSS MB | load avg after (convert; infer) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        if "convert_s" not in r:
            continue
        shape, qtype = key.split("/")
        row = f"| {shape} | {qtype.upper()} | {r['size_mb']:.0f} | {r['convert_s']:.0f} "
        row += f"| {r['convert_peak_mb']:.0f} "
        s = r.get("s_per_cell")
        if s:
            cpu = r.get("cpu_s_per_cell")
            row += (
                f"| {r['n_prompt_tokens']:.0f} | {sum(s) / len(s):.1f} / {min(s):.1f} ({len(s)}) "
                f"| {f'{sum(cpu) / len(cpu):.1f} / {min(cpu):.1f}' if cpu else '-'} "
                f"| {r['load_s']:.1f} | {r['tokens_per_s']:.2f} | {r['model_rss_mb']:.0f} "
            )
        else:
            row += "| - | - | - | - | - | - "
        infer_load = r["load_infer"].split(" -> ")[1] if s else "-"
        rows.append(row + f"| {r['load_convert'].split(' -> ')[1]}; {infer_load} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated shapes")
    parser.add_argument("--types", default=None, help="comma-separated types (default per shape)")
    parser.add_argument("--infer", default=None, help="types to time (default: all converted)")
    parser.add_argument("--cells", type=int, default=2, help="cells scored per type")
    parser.add_argument("--sdist", type=Path, default=None, help="llama-cpp-python sdist")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--build", nargs=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.build:
        write_checkpoint(SHAPES[args.build[0]], SCRATCH / args.build[0] / "checkpoint", args.sdist)
        return
    SCRATCH.mkdir(parents=True, exist_ok=True)
    results_file = SCRATCH / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    prompts_file = SCRATCH / "prompts.json"
    prompts_file.write_text(json.dumps(make_prompts(args.cells)))
    print(f"CPU: {cpu_line()}\nllama.cpp: {backend_line()}\nload average before: {load_average()}")
    print(f"{args.cells} cells x {len(LABELS)} labels per type; generation {GEN_TOKENS} tokens\n")
    for key in args.shapes.split(","):
        shape, folder = SHAPES[key], SCRATCH / key
        ckpt = folder / "checkpoint"
        types = args.types.split(",") if args.types else DEFAULT_TYPES[key]
        to_convert = [t for t in types if "convert_s" not in results.get(f"{key}/{t}", {})]
        if to_convert and not (ckpt / "config.json").exists():
            start = time.perf_counter()
            cmd = [sys.executable, __file__, "--build", key]
            cmd += ["--sdist", str(args.sdist)] if args.sdist else []
            subprocess.run(cmd, check=True, preexec_fn=_nice)
            print(f"{key}: wrote the checkpoint in {time.perf_counter() - start:.0f} s", flush=True)
            size = sum(f.stat().st_size for f in ckpt.glob("*.safetensors")) / 1e6
            print(f"{key}: {shape.dtype} checkpoint {size:.0f} MB ({shape.hf_repo})", flush=True)
        for qtype in types:
            out, done = folder / f"model.{qtype}.gguf", results.setdefault(f"{key}/{qtype}", {})
            if "convert_s" not in done:
                done |= convert(ckpt, out, qtype, folder / f"convert.{qtype}.log")
                results_file.write_text(json.dumps(results, indent=1))
            if "s_per_cell" not in done and (not args.infer or qtype in args.infer.split(",")):
                done |= infer(out, prompts_file)
                results_file.write_text(json.dumps(results, indent=1))
            print(f"{key} {qtype}: {json.dumps(done)}", flush=True)
            if not args.keep:
                out.unlink(missing_ok=True)
        if not args.keep:
            shutil.rmtree(ckpt, ignore_errors=True)
    print(f"\nload average after: {load_average()}\n")
    print(table(results))
    if not args.keep:
        shutil.rmtree(SCRATCH, ignore_errors=True)


if __name__ == "__main__":
    main()
