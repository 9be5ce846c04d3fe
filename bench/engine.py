"""Benchmark per-cell annotation: ProcessEngine label scoring vs the transformers reference.

Builds a Pythia-410m-shaped GPT-NeoX with random weights (hidden 1024, 24 layers, 16 heads,
ffn 4096, vocab 50304) and Pythia's real tokenizer (GPT-NeoX-20B vocabulary and merges, rebuilt
from ``vendor/llama.cpp/models/ggml-vocab-gpt-neox.gguf`` of the llama-cpp-python sdist) into
bench/out/engine/, converts it with c2s-quantize to the recommended CPU type (Q4_0), and times
per cell (200-gene prompt of a real PBMC cell, template 0, 10 candidate labels):

* ``transformers generate``: fp32 greedy generation of the label (max_new_tokens 20), the way
  cell2sentence annotates;
* ``transformers score``: fp32 with a KV cache, scoring each label's log-likelihood;
* ``ProcessEngine <type>``: label scoring with the default EngineOptions (flash attention, one
  thread per physical core, the CPU variant chosen at run time).

Robust on a busy machine: the models load once in long-lived child processes and the sides run
interleaved, rep by rep (the order rotates), so a load spike hits every side alike; each cell's
time is its best of the reps, s/cell the mean of those. The load average is printed before and
after. Peak memory = max ru_maxrss of each side's process and its children (the model process).

    python bench/engine.py            # full size: 3 cells x 10 labels, best of 5 (~6 min, 2 cores)
    python bench/engine.py --quick    # tiny model, under a minute (smoke run)
    python bench/engine.py --cli      # also c2s annotate --mode per-cell on the same cells
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.machine import cpu_line, load_average  # noqa: E402
from c2s_desktop.core.recommend import LABELS  # noqa: E402  (the standard ten PBMC labels)

OUT = ROOT / "bench" / "out" / "engine"
DATA = ROOT / "tests" / "data" / "pbmc_counts_small.h5ad"
FULL = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
PYTHIA_VOCAB = 50304  # Pythia's embedding rows (the tokenizer's 50277 tokens, padded)
LLAMA_VERSION = "0.3.36"
VOCAB_MEMBER = "vendor/llama.cpp/models/ggml-vocab-gpt-neox.gguf"
RECOMMENDED = "q4_0"
N_GENES, MAX_NEW_TOKENS, GEN_TOKENS = 200, 20, 64


# -- setup (in a child: the parent stays small) --------------------------------------------------
def pythia_vocab(folder: Path, given: Path | None) -> Path:
    """The GPT-NeoX vocabulary GGUF: ``given``, a cached copy, or extracted from the sdist."""
    if given is not None:
        return given
    cached = folder / "ggml-vocab-gpt-neox.gguf"
    if cached.exists():
        return cached
    sdist_dir = folder / "sdist"
    sdist = sdist_dir / f"llama_cpp_python-{LLAMA_VERSION}.tar.gz"
    if not sdist.exists():
        print(f"downloading the llama-cpp-python {LLAMA_VERSION} sdist (its vocabulary files)")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
            + ["-d", str(sdist_dir), f"llama-cpp-python=={LLAMA_VERSION}"],
            check=True,
        )
    with tarfile.open(sdist) as tar:
        member = tar.getmember(f"llama_cpp_python-{LLAMA_VERSION}/{VOCAB_MEMBER}")
        data = tar.extractfile(member)
        assert data is not None
        cached.write_bytes(data.read())
    return cached


def save_pythia_tokenizer(vocab_gguf: Path, folder: Path, n_vocab: int) -> None:
    """tokenizer.json etc. of Pythia (byte-level BPE) rebuilt from llama.cpp's vocabulary file."""
    from gguf import GGUFReader
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    fields = GGUFReader(vocab_gguf).fields
    tokens = list(fields["tokenizer.ggml.tokens"].contents())[:n_vocab]
    types = list(fields["tokenizer.ggml.token_type"].contents())[:n_vocab]
    merges = [tuple(m.split(" ", 1)) for m in fields["tokenizer.ggml.merges"].contents()]
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # control (3) tokens are special; user-defined (4) ones (whitespace runs, fillers) are added
    added = [(t, ty) for t, ty in zip(tokens, types, strict=True) if ty > 1]
    tok.add_tokens([AddedToken(t, special=ty == 3, normalized=False) for t, ty in added])
    PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|padding|>",
    ).save_pretrained(folder)


def build(folder: Path, quick: bool, qtype: str, vocab: Path | None, threads: int) -> None:
    """The checkpoint and its GGUF (reused when present)."""
    from c2s_quantize import quantize_checkpoint
    from tests.quantize import quantize_builders as qb

    ckpt = folder / "checkpoint"
    if not (ckpt / "config.json").exists():
        if quick and vocab is None:
            qb.train_bpe_tokenizer(ckpt)
            qb.save_gptneox(ckpt, 1024, max_position_embeddings=2048)
        else:
            save_pythia_tokenizer(pythia_vocab(folder, vocab), ckpt, PYTHIA_VOCAB)
            shape = {} if quick else FULL
            qb.save_gptneox(ckpt, PYTHIA_VOCAB, max_position_embeddings=2048, **shape)
    if not gguf_path(folder, qtype).exists():
        quantize_checkpoint(
            ckpt, gguf_path(folder, qtype), qtype, hash_sources=False, threads=threads
        )


def gguf_path(folder: Path, qtype: str) -> Path:
    return folder / f"model.{qtype}.gguf"


def make_prompts(n_cells: int) -> list[str]:
    """Template 0 of the cell-type prompts with 200-gene sentences of real PBMC cells."""
    from c2s_desktop.core.dataset import open_dataset
    from c2s_desktop.core.prompts import prompt_values, template
    from c2s_desktop.core.sentences import cell_sentences

    dataset = open_dataset(DATA)
    sentences = cell_sentences(dataset, rows=list(range(n_cells)), top_k=N_GENES)
    tmpl = template("cell_type_prediction")
    return [
        tmpl.format(**prompt_values(organism="Homo sapiens", n_genes=N_GENES, sentence=s))
        for s in sentences
    ]


def write_cli_inputs(folder: Path, n_cells: int) -> None:
    """The candidate labels and the benchmark's cells as files for ``c2s annotate``."""
    import anndata

    ids = anndata.read_h5ad(DATA, backed="r").obs_names[:n_cells]
    (folder / "labels.txt").write_text("\n".join(LABELS) + "\n")
    (folder / "cells.txt").write_text("\n".join(ids) + "\n")


def cli_command(folder: Path, qtype: str, threads: int) -> list[str]:
    """``c2s annotate --mode per-cell`` on the benchmark's cells, labels and GGUF."""
    c2s = Path(sys.executable).with_name("c2s")
    return [
        *(str(c2s), "annotate", str(DATA), "-o", str(folder / "annotated.h5ad"), "--overwrite"),
        *("--model", str(gguf_path(folder, qtype)), "--mode", "per-cell"),
        *("--threads", str(threads), "--cells", str(folder / "cells.txt")),
        *("--candidates", str(folder / "labels.txt")),
    ]


def cli_annotate(folder: Path, qtype: str, threads: int) -> str:
    """Run the command; its own s/cell line."""
    cmd = cli_command(folder, qtype, threads)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [x for x in proc.stderr.splitlines() if "s per cell" in x]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"c2s annotate failed:\n{proc.stderr[-3000:]}")
    return f"{' '.join(cmd)}\n  {lines[-1]}"


# -- sides (each a long-lived child process) -----------------------------------------------------
def continuations() -> list[str]:
    return [f" {label}." for label in LABELS]


class Transformers:
    """fp32 transformers: greedy generation and KV-cache label scoring on one loaded model."""

    def __init__(self, folder: str, threads: int) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()

    def n_tokens(self, prompt: str) -> int:
        return len(self.tok(prompt)["input_ids"])

    def generate(self, prompt: str) -> None:
        ids = self.tok(prompt, return_tensors="pt")
        with self.torch.no_grad():
            self.model.generate(
                **ids, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, pad_token_id=1
            )

    def score(self, prompt: str) -> None:
        torch = self.torch
        head = self.tok(prompt)["input_ids"]
        with torch.no_grad():
            out = self.model(torch.tensor([head]), use_cache=True)
            cache, last = out.cache, out.logits[0, -1:]
            for cont in continuations():
                ids = self.tok(prompt + cont)["input_ids"][len(head) :]
                step = self.model(torch.tensor([ids]), cache=cache, use_cache=True)
                logits = torch.cat([last, step.logits[0, :-1]]).log_softmax(-1)
                float(logits[torch.arange(len(ids)), torch.tensor(ids)].sum())
                cache.crop(-len(ids))  # back to the prompt


class Engine:
    """ProcessEngine with the default options (threads: --threads, as the reference's)."""

    def __init__(self, path: str, threads: int) -> None:
        from c2s_desktop.core.engine.base import EngineOptions
        from c2s_desktop.core.engine.process import ProcessEngine

        start = time.perf_counter()
        self.engine = ProcessEngine(path, EngineOptions(n_ctx=4096, threads=threads))
        self.load_s = time.perf_counter() - start

    def n_tokens(self, prompt: str) -> int:
        return len(self.engine.tokenize(prompt))

    def score(self, prompt: str) -> None:
        self.engine.score(prompt, continuations())

    def generate_rate(self, prompt: str) -> float:
        from c2s_desktop.core.engine.base import GenerateParams

        self.engine.generate(prompt[:200], GenerateParams(max_tokens=4))  # warm-up
        gen = self.engine.generate(prompt[:200], GenerateParams(max_tokens=GEN_TOKENS))
        return gen.n_tokens / gen.seconds

    def close(self) -> None:
        self.engine.close()


def child(kind: str, model: str, prompts_file: str, threads: int) -> None:
    """Serve ``run <method>`` lines (one timed pass over the prompts each) until ``quit``."""
    prompts = json.loads(Path(prompts_file).read_text())
    side: Any = Transformers(model, threads) if kind == "hf" else Engine(model, threads)
    methods: dict[str, Callable[[str], Any]] = {"score": side.score}
    if kind == "hf":
        methods["generate"] = side.generate
    side_prompts = [side.n_tokens(p) for p in prompts]
    methods["score"](prompts[0])  # warm-up (allocations, repacking, thread pools)
    reply({"load_s": getattr(side, "load_s", None), "n_prompt_tokens": side_prompts})
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "run":
            times = []
            for prompt in prompts:
                start = time.perf_counter()
                methods[arg](prompt)
                times.append(time.perf_counter() - start)
            reply({"seconds": times})
        elif command == "generate_rate":
            reply({"tokens_per_s": side.generate_rate(prompts[0])})
        elif command == "quit":
            break
    if kind == "engine":
        side.close()  # the model process is joined: its peak RSS counts among the children
    rss = max(
        resource.getrusage(r).ru_maxrss for r in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    reply({"peak_rss_mb": rss / 1024})  # Linux reports KiB


def reply(obj: dict[str, Any]) -> None:
    print("@result " + json.dumps(obj), flush=True)


class Side:
    """The parent's handle on one child."""

    def __init__(self, kind: str, model: Path, prompts_file: Path, threads: int) -> None:
        cmd = [sys.executable, __file__, "--child", kind, str(model), str(prompts_file)]
        cmd += ["--threads", str(threads)]
        self.kind = kind
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ready = self.read()

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("@result "):
                return json.loads(line.removeprefix("@result "))
        raise SystemExit(f"the {self.kind} child died (exit {self.proc.wait()})")

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def finish(self) -> float:
        peak = self.ask("quit")["peak_rss_mb"]
        self.proc.wait()
        return float(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, smoke run")
    parser.add_argument("--cells", type=int, default=None, help="cells (default 3, quick 2)")
    parser.add_argument("--reps", type=int, default=None, help="best of N (default 5, quick 2)")
    parser.add_argument("--type", default=RECOMMENDED, help="GGUF type for ProcessEngine")
    parser.add_argument("--threads", type=int, default=None, help="threads (physical cores)")
    parser.add_argument("--vocab", type=Path, default=None, help="ggml-vocab-gpt-neox.gguf")
    parser.add_argument("--generation", action="store_true", help="also generation tokens/s")
    parser.add_argument("--cli", action="store_true", help="also c2s annotate --mode per-cell")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads is None:
        from c2s_desktop.core.engine.cores import physical_cores

        args.threads = physical_cores()
    if args.child:
        child(*args.child, args.threads)
        return
    folder = OUT / (
        ("quick-pythia-vocab" if args.vocab else "quick") if args.quick else "pythia410m"
    )
    folder.mkdir(parents=True, exist_ok=True)
    prompts_file = folder / "prompts.json"
    n_cells = args.cells or (2 if args.quick else 3)
    reps = args.reps or (2 if args.quick else 5)
    if args.build_only:
        build(folder, args.quick, args.type, args.vocab, args.threads)
        prompts_file.write_text(json.dumps(make_prompts(n_cells)))
        write_cli_inputs(folder, n_cells)
        return
    started = time.perf_counter()
    # A forked child starts with its parent's peak RSS on Linux: build in a child too.
    subprocess.run([sys.executable, __file__, "--build-only", *sys.argv[1:]], check=True)
    from c2s_desktop.core.engine.backend import backend_info

    print(f"CPU: {cpu_line()}\nllama.cpp: {backend_info().summary()}")
    print(f"load average before: {load_average()}")
    print(
        f"{n_cells} cells x {len(LABELS)} labels, best of {reps} interleaved reps, "
        f"{args.threads} threads\n",
        flush=True,
    )
    hf = Side("hf", folder / "checkpoint", prompts_file, args.threads)
    engine = Side("engine", gguf_path(folder, args.type), prompts_file, args.threads)
    runs: dict[str, tuple[Side, str]] = {
        "transformers fp32, greedy generate": (hf, "generate"),
        "transformers fp32, KV cache + label scoring": (hf, "score"),
        f"ProcessEngine {args.type.upper()}, label scoring (defaults)": (engine, "score"),
    }
    best: dict[str, list[float]] = {name: [float("inf")] * n_cells for name in runs}
    names = list(runs)
    for rep in range(reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            side, method = runs[name]
            seconds = side.ask(f"run {method}")["seconds"]
            best[name] = [min(a, b) for a, b in zip(best[name], seconds, strict=True)]
    rate = engine.ask("generate_rate")["tokens_per_s"] if args.generation else None
    peak = {"hf": hf.finish(), "engine": engine.finish()}
    per_cell = {name: sum(b) / len(b) for name, b in best.items()}
    print("| variant | prompt tokens | s/cell (best of reps) | peak RSS MB |")
    print("|---|---|---|---|")
    for name, (side, _) in runs.items():
        tokens = side.ready["n_prompt_tokens"]
        print(
            f"| {name} | {sum(tokens) / len(tokens):.0f} | {per_cell[name]:.2f} "
            f"| {peak[side.kind]:.0f} |"
        )
    ref = min(names[:2], key=per_cell.__getitem__)
    print(
        f"\n{args.type.upper()} label scoring vs the faster reference ({ref}): "
        f"{per_cell[ref] / per_cell[names[2]]:.2f}x the speed at "
        f"{peak['engine'] / peak['hf']:.0%} of its peak memory "
        f"(ProcessEngine load {engine.ready['load_s']:.1f} s)"
    )
    if args.cli:
        print(f"through the public CLI: {cli_annotate(folder, args.type, args.threads)}")
    if rate is not None:
        print(f"ProcessEngine {args.type.upper()} greedy generation: {rate:.1f} tokens/s")
    print(f"load average after: {load_average()}; {time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
