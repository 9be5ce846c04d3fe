"""Train the tiny C2S demo model from scratch, on CPU, and convert it to GGUF.

This script is the documentation of how ``resources/demo/c2s-demo-pbmc.q8_0.gguf`` was made.

    python resources/demo/train_demo_model.py [--steps 2400] [--threads 2]

* Data: ``resources/demo/pbmc_demo.h5ad`` (700 real PBMCs, see README.md), split 80/20 per cell
  type with a fixed seed; only the training split is used for training.
* Model: GPT-NeoX (the Pythia C2S architecture): hidden 256, 4 layers, 4 heads, rotary 25 %,
  parallel residual; a byte-level BPE tokenizer trained here on gene names and prompt text
  (tokenizer and shape from the test checkpoints' builders, tests/quantize/quantize_builders.py).
* Tasks, with the prompt templates of the released models (cell2sentence 1.2.0 JSON files, a
  random paraphrase per example as in C2S training): cell-type prediction (50-200 genes) and
  cell-type-conditioned generation (100 genes). Loss on the response only, EOS appended.
* Conversion: ``c2s_quantize.quantize_checkpoint`` to Q8_0, provenance repo
  ``c2s-desktop/demo-pbmc-tiny`` (a demo model, not C2S-Scale).
* Quality on the held-out split is printed: label-scoring accuracy per type through the app's own
  engine, generated-cell validity and correlation with real cells.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from c2s_desktop.core.dataset import open_dataset  # noqa: E402
from c2s_desktop.core.prompts import (  # noqa: E402
    CELL_TYPE_GENERATION,
    CELL_TYPE_PREDICTION,
    label_continuation,
    prompt_values,
    templates,
)
from c2s_desktop.core.sentences import cell_sentences  # noqa: E402
from tests.quantize.quantize_builders import bpe_tokenizer, gptneox_config  # noqa: E402

DATA = HERE / "pbmc_demo.h5ad"
OUT = HERE / "c2s-demo-pbmc.q8_0.gguf"
REPO = "c2s-desktop/demo-pbmc-tiny"
LABEL_KEY = "cell_type"
SEED = 0


def split(labels: np.ndarray, test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split (seeded): indices of train and held-out cells."""
    rng = np.random.default_rng(SEED)
    train, test = [], []
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n_test = max(1, round(len(idx) * test_fraction))
        test.extend(idx[:n_test])
        train.extend(idx[n_test:])
    return np.sort(train), np.sort(test)


def examples(sentences: list[str], labels: list[str], organism: str, rng: random.Random):
    """One prediction and one generation example per cell: (prompt, response)."""
    pred, gen = templates(CELL_TYPE_PREDICTION), templates(CELL_TYPE_GENERATION)
    out = []
    for sentence, label in zip(sentences, labels, strict=True):
        k = rng.randint(50, 200)
        t = rng.choice(pred)
        out.append(
            (
                t.format(**prompt_values(organism=organism, n_genes=k, sentence=sentence)),
                label_continuation(label),
            )
        )
        t = rng.choice(gen)
        values = prompt_values(organism=organism, n_genes=100, cell_type=label, sentence=sentence)
        out.append((t.format(**values), " " + values["cell_sentence"] + "."))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=2400)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--output", type=Path, default=OUT)
    args = p.parse_args()

    import torch
    from transformers import GPTNeoXForCausalLM

    from c2s_quantize import quantize_checkpoint
    from c2s_quantize.provenance import SourceInfo

    torch.manual_seed(SEED)
    torch.set_num_threads(args.threads)
    rng = random.Random(SEED)
    with open_dataset(DATA) as ds:
        labels_all = ds.obs[LABEL_KEY].astype(str).to_numpy()
        train, test = split(labels_all)
        sentences = cell_sentences(ds, top_k=200)
        organism = ds.organism
        genes = [str(w) for w in ds.vocabulary.words]
    label_set = sorted(set(labels_all))
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "demo"
        corpus = [" ".join(genes)] * 4 + [t.text for t in templates(CELL_TYPE_PREDICTION)]
        corpus += [t.text for t in templates(CELL_TYPE_GENERATION)] + label_set * 4
        corpus += [sentences[i] for i in train]
        tok = bpe_tokenizer(folder, corpus, vocab_size=2048)
        config = gptneox_config(
            len(tok),
            num_hidden_layers=4,
            max_position_embeddings=1024,
            initializer_range=0.02,  # transformers' default (the test checkpoints' is wider)
            bos_token_id=0,
            eos_token_id=0,
            pad_token_id=1,
        )
        model = GPTNeoXForCausalLM(config)
        train_labels = [labels_all[i] for i in train]
        train_sentences = [sentences[i] for i in train]
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=1e-3, total_steps=args.steps, pct_start=0.1
        )
        pool: list[tuple[str, str]] = []
        model.train()
        for step in range(args.steps):
            if len(pool) < args.batch:
                pool = examples(train_sentences, train_labels, organism, rng)
                rng.shuffle(pool)
            batch, pool = pool[: args.batch], pool[args.batch :]
            ids, masks = [], []
            for prompt, response in batch:
                a = tok(prompt)["input_ids"]
                b = tok(response)["input_ids"] + [tok.eos_token_id]
                ids.append(a + b)
                masks.append([-100] * len(a) + b)
            width = max(map(len, ids))
            input_ids = torch.tensor([x + [1] * (width - len(x)) for x in ids])
            label_ids = torch.tensor([m + [-100] * (width - len(m)) for m in masks])
            attn = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
            loss = model(input_ids=input_ids, attention_mask=attn, labels=label_ids).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            if step % 50 == 0 or step == args.steps - 1:
                print(
                    f"step {step:5d}  loss {loss.item():.3f}  {time.time() - t0:6.0f} s", flush=True
                )
        model.eval()
        model.save_pretrained(folder, safe_serialization=True)
        quantize_checkpoint(folder, args.output, "q8_0", source=SourceInfo(REPO, "trained-here"))
    minutes = (time.time() - t0) / 60
    print(
        f"trained and converted in {minutes:.1f} min → {args.output} "
        f"({args.output.stat().st_size / 1e6:.1f} MB)"
    )
    split_file = HERE / "demo_split.json"
    split_file.write_text(
        json.dumps(
            {"train": train.tolist(), "test": test.tolist(), "label_key": LABEL_KEY, "seed": SEED}
        )
    )
    import subprocess

    subprocess.run(
        [sys.executable, str(HERE / "evaluate_demo_model.py"), str(args.output)], check=False
    )


if __name__ == "__main__":
    main()
