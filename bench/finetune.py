"""Benchmark LoRA fine-tuning: seconds per training step and peak memory, so a user can tell
what a laptop can train.

Two bases, both GPT-NeoX (the C2S-Pythia architecture), trained on the real PBMC cells of
``resources/demo/pbmc_demo.h5ad`` (label ``cell_type``, 200-gene cell sentences, the released
cell-type prompt) with the core's own training step (``core.finetune.measure_step``: LoRA rank
8 on the attention projections, AdamW, batch of cells, mean of the steps after a warm-up step):

* ``demo``: the bundled demo model (4 layers, hidden 256, own 1,760-token vocabulary), exported
  from its GGUF with ``c2s-quantize export-hf`` (as a user with only the GGUF would);
* ``pythia-410m``: the shape of C2S-Pythia-410m (hidden 1024, 24 layers, 16 heads, ffn 4096,
  vocabulary 50304) with random weights and Pythia's real tokenizer (rebuilt from the
  llama-cpp-python sdist's ``ggml-vocab-gpt-neox.gguf``, as ``bench/engine.py`` does). Random
  weights train at the speed of real ones: the arithmetic is the same.

Each measurement runs in a fresh child process; its peak RSS (``ru_maxrss``) is the figure.
The CPU (model name and AVX2/AVX-512/AMX flags), torch's version and threads and the load
average before and after are printed beside the results.

    python bench/finetune.py                  # both bases (~6 min on 2 busy cores)
    python bench/finetune.py --quick          # the demo model only (about a minute)

``--agreement ADAPTER.gguf --gguf BASE.gguf --merged DIR --data H5AD --label-key COL`` instead
compares a trained adapter's label log-likelihoods in llama.cpp (the engine: base GGUF + adapter)
with transformers on the merged checkpoint ``c2s finetune --merge`` wrote (peft's merge of the
same LoRA), on the first ``--cells`` cells of the data, every label of the adapter.
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
from bench.machine import cpu_line, load_average  # noqa: E402

OUT = ROOT / "bench" / "out" / "finetune"
DATA = ROOT / "resources" / "demo" / "pbmc_demo.h5ad"
DEMO_GGUF = ROOT / "resources" / "demo" / "c2s-demo-pbmc.q8_0.gguf"
LABEL_KEY = "cell_type"
N_GENES = 200


# -- bases ---------------------------------------------------------------------------------------
def demo_base(folder: Path) -> Path:
    """The demo GGUF exported to a Hugging Face folder (reused when present)."""
    from c2s_quantize.export_hf import export_hf

    target = folder / "demo-hf"
    if not (target / "config.json").exists():
        export_hf(DEMO_GGUF, target)
    return target


def pythia_base(folder: Path, vocab: Path | None) -> Path:
    """A Pythia-410m-shaped GPT-NeoX with random weights and Pythia's tokenizer."""
    from bench.engine import FULL, PYTHIA_VOCAB, pythia_vocab, save_pythia_tokenizer
    from tests.quantize import quantize_builders as qb

    target = folder / "pythia-410m"
    if not (target / "model.safetensors").exists():
        save_pythia_tokenizer(pythia_vocab(folder, vocab), target, PYTHIA_VOCAB)
        qb.save_gptneox(target, PYTHIA_VOCAB, max_position_embeddings=2048, **FULL)
    return target


# -- one measurement (child process) ------------------------------------------------------------
def child(base: Path, batch: int, steps: int, threads: int) -> None:
    """Measure in this process and print one JSON line (seconds per step, peak RSS)."""
    import torch

    from c2s_desktop.core.finetune import FinetuneOptions, measure_step

    opts = FinetuneOptions(
        label_key=LABEL_KEY, batch_size=batch, n_genes=N_GENES, threads=threads, device="cpu"
    )
    t0 = time.perf_counter()
    seconds = measure_step(DATA, base, opts, steps=steps)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "s_per_step": seconds,
                "peak_rss_mb": rss,
                "wall_s": time.perf_counter() - t0,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
            }
        ),
        flush=True,
    )


def measure(base: Path, batch: int, steps: int, threads: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", str(base), "--batch", str(batch)]
    cmd += ["--steps", str(steps), "--threads", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"measurement failed for {base}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- adapter agreement: llama.cpp + LoRA vs transformers + peft (merged) -------------------------
def agreement(
    adapter: Path, gguf: Path, merged: Path, base: Path | None, data: Path, n_cells: int
) -> None:
    """Label log-likelihoods of llama.cpp (GGUF + adapter) vs transformers (merged folder); with
    ``base`` (the base checkpoint folder) also the base alone, which sets the tolerance."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from c2s_desktop.core.adapters import read_adapter
    from c2s_desktop.core.dataset import open_dataset
    from c2s_desktop.core.engine.base import EngineOptions
    from c2s_desktop.core.engine.local import LocalEngine
    from c2s_desktop.core.finetune.examples import ExampleBuilder
    from c2s_desktop.core.sentences import cell_sentences
    from tests.helpers import tokens_logprob

    info = read_adapter(adapter)
    tok = AutoTokenizer.from_pretrained(merged)
    with open_dataset(data) as ds:
        sentences = cell_sentences(ds, np.arange(n_cells), top_k=N_GENES)
        organism = ds.organism

    def hf_scores(folder: Path) -> tuple[list[Any], np.ndarray]:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        n_ctx = int(model.config.max_position_embeddings)
        build = ExampleBuilder(tok, info.labels, organism, N_GENES, n_ctx)
        examples, rows = [build(s) for s in sentences], []
        for ex in examples:
            zipped = zip(ex.sequences, ex.splits, strict=True)
            rows.append([tokens_logprob(model, seq, split) for seq, split in zipped])
        return examples, np.array(rows)

    def llama_scores(examples: list[Any], with_adapter: bool) -> np.ndarray:
        opts = EngineOptions(n_ctx=1024, adapter=str(adapter) if with_adapter else None)
        conts = [f" {label}." for label in info.labels]
        with LocalEngine(gguf, opts) as engine:
            return np.array(
                [[s.logprob for s in engine.score(ex.prompt, conts)] for ex in examples]
            )

    def line(what: str, a: np.ndarray, b: np.ndarray) -> None:
        d = np.abs(a - b)
        print(
            f"{what}: max |llama.cpp - transformers| = {d.max():.2e} nats, mean {d.mean():.2e}, "
            f"max relative {(d / np.abs(b)).max():.1e}; scores {b.min():.1f} to {b.max():.1f}; "
            f"same best label in {(a.argmax(1) == b.argmax(1)).mean():.0%} of cells"
        )

    examples, ref = hf_scores(merged)
    print(f"{adapter.name} on {gguf.name}: {len(examples)} cells x {len(info.labels)} labels")
    ours = llama_scores(examples, True)
    line("with the adapter (peft merged)", ours, ref)
    if base is not None:
        _, ref_base = hf_scores(base)
        ours_base = llama_scores(examples, False)
        line("base alone", ours_base, ref_base)
        print(f"the adapter moves scores by up to {np.abs(ours - ours_base).max():.2f} nats")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the demo model only")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after the warm-up")
    parser.add_argument("--batch", type=int, default=8, help="cells per step (demo model)")
    parser.add_argument("--pythia-batch", type=int, default=1, help="cells per step (410m)")
    parser.add_argument("--vocab", type=Path, default=None, help="ggml-vocab-gpt-neox.gguf")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--agreement", type=Path, default=None, help="adapter GGUF to check")
    parser.add_argument("--gguf", type=Path, default=DEMO_GGUF, help="its base GGUF")
    parser.add_argument("--merged", type=Path, default=None, help="c2s finetune --merge folder")
    parser.add_argument("--base", type=Path, default=None, help="base checkpoint folder")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cells", type=int, default=10)
    args = parser.parse_args()
    if args.agreement is not None:
        if args.merged is None:
            parser.error("--agreement needs --merged")
        agreement(args.agreement, args.gguf, args.merged, args.base, args.data, args.cells)
        return
    if args.child is not None:
        child(args.child, args.batch, args.steps, args.threads)
        return
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {cpu_line()}")
    print(f"load average before: {load_average()}")
    bases = [("demo (4 layers, hidden 256)", demo_base(OUT), args.batch)]
    if not args.quick:
        bases.append(
            ("Pythia-410m shape (24 layers, hidden 1024)", pythia_base(OUT, args.vocab), 0)
        )
    rows = []
    for name, base, batch in bases:
        batch = batch or args.pythia_batch
        r = measure(base, batch, args.steps, args.threads)
        rows.append((name, batch, r))
        print(
            f"{name}: {r['s_per_step']:.2f} s/step at {batch} cells/step "
            f"({r['s_per_step'] / batch:.2f} s/cell), peak RSS {r['peak_rss_mb']:.0f} MiB "
            f"[torch {r['torch']}, {r['threads']} threads]",
            flush=True,
        )
    print(f"load average after: {load_average()}")
    print("\n| base | cells/step | s/step | s/cell | peak RSS |")
    print("|---|---|---|---|---|")
    for name, batch, r in rows:
        print(
            f"| {name} | {batch} | {r['s_per_step']:.2f} | {r['s_per_step'] / batch:.2f} | "
            f"{r['peak_rss_mb'] / 1024:.2f} GiB |"
        )
    (OUT / "results.json").write_text(
        json.dumps(
            {"cpu": cpu_line(), "rows": [{"base": n, "batch": b, **r} for n, b, r in rows]},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
