"""Benchmark cell-type annotation: ProcessEngine label scoring vs the transformers reference.

Builds a Pythia-410m-shaped GPT-NeoX with random weights (hidden 1024, 24 layers, 16 heads,
ffn 4096, vocab 50304 with a small trained BPE tokenizer) into bench/out/, converts it to F16,
Q8_0, Q4_K_M, Q4_0 and IQ4_NL GGUF, and times per cell (200-gene prompt, template 0, 10
candidate labels):

* ``hf_generate``: transformers fp32 greedy generation of the label (max_new_tokens 20), the
  way cell2sentence annotates;
* ``hf_score``: transformers fp32 with a KV cache, scoring each label's log-likelihood;
* ``engine_<type>``: ProcessEngine.score on each GGUF with the default EngineOptions (flash
  attention, the CPU variant chosen at run time);

then the speed-up of the recommended type (Q4_0) over the faster reference and its share of the
reference's peak memory, plus generation tokens/s of ProcessEngine vs raw llama-cpp-python on
the Q8_0 file. Every variant runs in its own child process; peak RSS = max(ru_maxrss of it,
its children).

    python bench/engine.py            # full size (~10 min on 2 cores)
    python bench/engine.py --small    # tiny model, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out" / "engine"
FULL = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
GGUF_TYPES = ("f16", "q8_0", "q4_k_m", "q4_0", "iq4_nl")
RECOMMENDED = "q4_0"
LABELS = (
    "CD4-positive, alpha-beta T cell",
    "CD8-positive, alpha-beta T cell",
    "B cell",
    "natural killer cell",
    "CD14-positive monocyte",
    "CD16-positive monocyte",
    "platelet",
    "plasmacytoid dendritic cell",
    "conventional dendritic cell",
    "erythrocyte",
)
N_GENES, MAX_NEW_TOKENS, GEN_TOKENS = 200, 20, 64
THREADS = int(os.environ.get("C2S_BENCH_THREADS", os.cpu_count() or 1))


# -- setup (parent) ------------------------------------------------------------------------------
def gguf_path(folder: Path, qtype: str) -> Path:
    return folder / f"model.{qtype}.gguf"


def build(folder: Path, small: bool) -> None:
    """The checkpoint and its GGUFs (reused when present)."""
    from c2s_quantize import quantize_checkpoint
    from tests.quantize import quantize_builders as qb

    ckpt = folder / "checkpoint"
    if not (ckpt / "config.json").exists():
        qb.train_bpe_tokenizer(ckpt)
        if small:
            qb.save_gptneox(ckpt, 1024, max_position_embeddings=2048)
        else:
            qb.save_gptneox(ckpt, 50304, max_position_embeddings=2048, **FULL)
    for qtype in GGUF_TYPES:
        if not gguf_path(folder, qtype).exists():
            quantize_checkpoint(
                ckpt, gguf_path(folder, qtype), qtype, hash_sources=False, threads=THREADS
            )


def make_prompts(n_cells: int) -> list[str]:
    """Template 0 of the cell-type prompts with 200-gene sentences of real PBMC cells."""
    from c2s_desktop.core.dataset import open_dataset
    from c2s_desktop.core.sentence_writer import cell_sentences

    templates = json.loads(
        (ROOT / "resources/prompts/single_cell_cell_type_prediction_prompts.json").read_text()
    )
    dataset = open_dataset(ROOT / "tests/data/pbmc_counts_small.h5ad")
    sentences = cell_sentences(dataset, rows=list(range(n_cells)), top_k=N_GENES)
    return [
        templates["model_input"][0].format(
            num_genes=N_GENES, organism="Homo sapiens", cell_sentence=s
        )
        for s in sentences
    ]


def cpu_name() -> str:
    """The lscpu model name and the vector extensions that matter for llama.cpp."""
    model, flags = "unknown CPU", set()
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return model
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            model = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8")
    return f"{model} ({', '.join(f for f in wanted if f in flags) or 'no AVX2'})"


def backend_line() -> str:
    """The CPU variant llama.cpp loads here (in a child, to keep this process small)."""
    code = "from c2s_desktop.core.engine.backend import backend_info as b; print(b().summary())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return proc.stdout.strip()


# -- variants (each in a child process) ----------------------------------------------------------
def continuations() -> list[str]:
    return [f" {label}." for label in LABELS]


def hf_model(folder: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(THREADS)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return AutoTokenizer.from_pretrained(folder), model


def hf_generate(folder: str, prompts: list[str]) -> dict[str, Any]:
    import torch

    tok, model = hf_model(folder)
    times, answers, lengths = [], [], []
    for prompt in prompts:
        start = time.perf_counter()
        ids = tok(prompt, return_tensors="pt")
        lengths.append(ids["input_ids"].shape[1])
        with torch.no_grad():
            out = model.generate(
                **ids, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, pad_token_id=1
            )
        answers.append(tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))
        times.append(time.perf_counter() - start)
    return {"seconds": times, "n_prompt_tokens": sum(lengths) / len(lengths)}


def hf_score(folder: str, prompts: list[str]) -> dict[str, Any]:
    import torch

    tok, model = hf_model(folder)
    times, lengths = [], []
    for prompt in prompts:
        start = time.perf_counter()
        head = tok(prompt)["input_ids"]
        lengths.append(len(head))
        with torch.no_grad():
            out = model(torch.tensor([head]), use_cache=True)
            cache, last = out.cache, out.logits[0, -1:]
            for cont in continuations():
                ids = tok(prompt + cont)["input_ids"][len(head) :]
                step = model(torch.tensor([ids]), cache=cache, use_cache=True)
                logits = torch.cat([last, step.logits[0, :-1]]).log_softmax(-1)
                float(logits[torch.arange(len(ids)), torch.tensor(ids)].sum())
                cache.crop(-len(ids))  # back to the prompt
        times.append(time.perf_counter() - start)
    return {"seconds": times, "n_prompt_tokens": sum(lengths) / len(lengths)}


def engine_options() -> Any:
    from c2s_desktop.core.engine.base import EngineOptions

    return EngineOptions(n_ctx=4096, threads=THREADS)


def engine_score(path: str, prompts: list[str]) -> dict[str, Any]:
    from c2s_desktop.core.engine.process import ProcessEngine

    start = time.perf_counter()
    with ProcessEngine(path, engine_options()) as engine:
        load = time.perf_counter() - start
        times = []
        for prompt in prompts:
            start = time.perf_counter()
            engine.score(prompt, continuations())
            times.append(time.perf_counter() - start)
        n_prompt = sum(len(engine.tokenize(p)) for p in prompts) / len(prompts)
    return {"seconds": times, "load_s": load, "n_prompt_tokens": n_prompt}


def engine_generate(path: str, prompts: list[str]) -> dict[str, Any]:
    from c2s_desktop.core.engine.base import GenerateParams
    from c2s_desktop.core.engine.process import ProcessEngine

    with ProcessEngine(path, engine_options()) as engine:
        engine.generate(prompts[0][:200], GenerateParams(max_tokens=4))  # warm-up
        start = time.perf_counter()
        gen = engine.generate(prompts[0][:200], GenerateParams(max_tokens=GEN_TOKENS))
        seconds = time.perf_counter() - start
    return {"tokens_per_s": gen.n_tokens / seconds, "n_tokens": gen.n_tokens}


def raw_generate(path: str, prompts: list[str]) -> dict[str, Any]:
    from llama_cpp import Llama

    from c2s_desktop.core.engine.cpu_variants import ensure_loaded

    ensure_loaded()  # a portable build loads its CPU kernels at run time
    llm = Llama(path, n_ctx=4096, n_threads=THREADS, n_threads_batch=THREADS, verbose=False)
    llm.create_completion(prompts[0][:200], max_tokens=4, temperature=0.0)  # warm-up
    start = time.perf_counter()
    out = llm.create_completion(prompts[0][:200], max_tokens=GEN_TOKENS, temperature=0.0)
    seconds = time.perf_counter() - start
    n = out["usage"]["completion_tokens"]
    return {"tokens_per_s": n / seconds, "n_tokens": n}


VARIANTS = {
    "hf_generate": hf_generate,
    "hf_score": hf_score,
    "engine_score": engine_score,
    "engine_generate": engine_generate,
    "raw_generate": raw_generate,
}


def child(variant: str, model: str, prompts_file: str) -> None:
    prompts = json.loads(Path(prompts_file).read_text())
    result = VARIANTS[variant](model, prompts)
    rss = max(
        resource.getrusage(r).ru_maxrss for r in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    result["peak_rss_mb"] = rss / 1024  # Linux reports KiB
    print("@result " + json.dumps(result), flush=True)


def run(variant: str, model: Path, prompts_file: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", variant, str(model), str(prompts_file)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("@result ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{variant} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("@result "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny model, quick check")
    parser.add_argument("--cells", type=int, default=None, help="cells per variant")
    parser.add_argument("--threads", type=int, default=THREADS, help="CPU threads per variant")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    os.environ["C2S_BENCH_THREADS"] = str(args.threads)  # read by the children
    folder = OUT / ("small" if args.small else "full")
    files = {"checkpoint": folder / "checkpoint"} | {q: gguf_path(folder, q) for q in GGUF_TYPES}
    prompts_file = folder / "prompts.json"
    n_cells = args.cells or (3 if args.small else 4)
    if args.build_only:
        build(folder, args.small)
        prompts_file.write_text(json.dumps(make_prompts(n_cells)))
        return
    # Build in a child too: a forked child starts with its parent's peak RSS on Linux, so the
    # parent must stay small for the children's ru_maxrss to mean anything.
    subprocess.run([sys.executable, __file__, "--build-only", *sys.argv[1:]], check=True)
    variants = [
        ("transformers fp32, greedy generate", "hf_generate", "checkpoint"),
        ("transformers fp32, KV cache + label scoring", "hf_score", "checkpoint"),
    ] + [(f"ProcessEngine {q.upper()}, label scoring", "engine_score", q) for q in GGUF_TYPES]
    print(f"CPU: {cpu_name()}\nllama.cpp: {backend_line()}")
    print(f"{n_cells} cells, {len(LABELS)} labels, {args.threads} threads\n")
    print("| variant | prompt tokens | s/cell (mean) | s/cell (min) | load s | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    results = {}
    for name, variant, file in variants:
        r = results[variant, file] = run(variant, files[file], prompts_file)
        s, load = r["seconds"], f"{r['load_s']:.1f}" if "load_s" in r else "-"
        print(
            f"| {name} | {r['n_prompt_tokens']:.0f} | {sum(s) / len(s):.2f} | {min(s):.2f} "
            f"| {load} | {r['peak_rss_mb']:.0f} |",
            flush=True,
        )
    mean = {k: sum(r["seconds"]) / len(r["seconds"]) for k, r in results.items()}
    ref = min(("hf_generate", "checkpoint"), ("hf_score", "checkpoint"), key=mean.__getitem__)
    ours = ("engine_score", RECOMMENDED)
    print(
        f"\n{RECOMMENDED.upper()} label scoring vs the faster reference ({ref[0]}): "
        f"{mean[ref] / mean[ours]:.2f}x the speed at "
        f"{results[ours]['peak_rss_mb'] / results[ref]['peak_rss_mb']:.0%} of its peak memory"
    )
    print("\n| generation (Q8_0, greedy) | tokens/s | tokens | peak RSS MB |")
    print("|---|---|---|---|")
    for name, variant in (
        ("ProcessEngine", "engine_generate"),
        ("raw llama-cpp-python", "raw_generate"),
    ):
        r = run(variant, files["q8_0"], prompts_file)
        print(f"| {name} | {r['tokens_per_s']:.1f} | {r['n_tokens']} | {r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
