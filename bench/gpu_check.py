"""GPU offload check: the same label scores on the GPU as on the CPU, and how fast each is.

For a tiny GPT-NeoX (random weights, Q8_0) and the Pythia-410m shape of bench/engine.py (Q8_0),
each side runs in its own process: the CPU side with the project's venv build
(``n_gpu_layers=0``), the GPU side with the CUDA build (``--gpu-site``: a folder holding that
build's ``llama_cpp`` package, put first on ``PYTHONPATH``) and every layer offloaded
(``n_gpu_layers=-1``). It prints per model: s/cell of label scoring (4 cells x 10 labels),
generation tokens/s, the device, and checks that

* the GPU side really offloads (a CUDA device is registered and the model went there);
* every cell's best label is the same on both sides;
* |Δ log-likelihood| of every label is at most ``TOLERANCE`` nats (Q8_0 weights; the CUDA
  kernels accumulate in a different order and partly in half precision).

``--cpu-only`` (no GPU here) runs everything up to the CUDA step with the CPU build on both
sides, so the script itself is tested. ``make gpu-check`` builds the CUDA wheel (keyed cache)
and runs this; it is sized for a 10-minute run on a GPU machine. Exit code 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out" / "gpu_check"
TOLERANCE = 0.15
N_CELLS, GEN_TOKENS = 4, 64


def build_models() -> dict[str, Path]:
    """The tiny model (built here) and the 410M shape (bench/engine.py's build), both Q8_0."""
    from c2s_quantize import quantize_checkpoint
    from tests.quantize import quantize_builders as qb

    tiny = OUT / "tiny"
    if not (tiny / "checkpoint" / "config.json").exists():
        qb.train_bpe_tokenizer(tiny / "checkpoint")
        qb.save_gptneox(tiny / "checkpoint", 1024, max_position_embeddings=2048)
    if not (tiny / "model.q8_0.gguf").exists():
        quantize_checkpoint(
            tiny / "checkpoint", tiny / "model.q8_0.gguf", "q8_0", hash_sources=False
        )
    subprocess.run([sys.executable, str(ROOT / "bench/engine.py"), "--build-only"], check=True)
    return {
        "tiny GPT-NeoX": tiny / "model.q8_0.gguf",
        "Pythia-410m shape": ROOT / "bench/out/engine/full/model.q8_0.gguf",
    }


def side(model: str, gpu: bool, prompts_file: str) -> dict[str, Any]:
    """One side in this process: backend report, scores, s/cell, tokens/s."""
    from bench.engine import continuations
    from c2s_desktop.core.engine.backend import backend_info
    from c2s_desktop.core.engine.base import EngineOptions, GenerateParams
    from c2s_desktop.core.engine.local import LocalEngine

    prompts = json.loads(Path(prompts_file).read_text())
    info = backend_info()
    options = EngineOptions(n_ctx=4096, n_gpu_layers=-1 if gpu else 0, check_memory=False)
    with LocalEngine(model, options) as engine:
        scores, times = [], []
        for prompt in prompts:
            start = time.perf_counter()
            scores.append([s.logprob for s in engine.score(prompt, continuations())])
            times.append(time.perf_counter() - start)
        engine.generate(prompts[0][:200], GenerateParams(max_tokens=4))  # warm-up
        start = time.perf_counter()
        gen = engine.generate(prompts[0][:200], GenerateParams(max_tokens=GEN_TOKENS))
        tps = gen.n_tokens / (time.perf_counter() - start)
        note = engine.load_note
    return {
        "device": info.summary(),
        "accelerator": info.accelerator,
        "scores": scores,
        "s_per_cell": sum(times[1:] or times) / len(times[1:] or times),
        "tokens_per_s": tps,
        "load_note": note,
    }


def run_side(model: Path, gpu: bool, prompts_file: Path, gpu_site: Path | None) -> dict:
    env = dict(os.environ)
    if gpu and gpu_site is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(gpu_site), str(ROOT)])
    cmd = [sys.executable, __file__, "--side", str(model), str(int(gpu)), str(prompts_file)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("@result ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"the {'GPU' if gpu else 'CPU'} side failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("@result "))


def compare(cpu: dict, gpu: dict, expect_gpu: bool) -> list[str]:
    """What failed (empty when the GPU side agrees with the CPU side)."""
    problems = []
    if expect_gpu and gpu["accelerator"] == "CPU":
        problems.append(f"no GPU backend on the GPU side ({gpu['device']})")
    if gpu["load_note"]:
        problems.append(gpu["load_note"])
    for i, (a, b) in enumerate(zip(cpu["scores"], gpu["scores"], strict=True)):
        if max(range(len(a)), key=a.__getitem__) != max(range(len(b)), key=b.__getitem__):
            problems.append(f"cell {i}: best label differs")
        delta = max(abs(x - y) for x, y in zip(a, b, strict=True))
        if delta > TOLERANCE:
            problems.append(f"cell {i}: |Δ log-likelihood| {delta:.4f} > {TOLERANCE}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu-site", type=Path, help="folder with the CUDA build's llama_cpp")
    parser.add_argument("--cpu-only", action="store_true", help="no GPU: test up to CUDA")
    parser.add_argument("--side", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        model, gpu, prompts = args.side
        print("@result " + json.dumps(side(model, gpu == "1", prompts)), flush=True)
        return 0
    if not args.cpu_only and args.gpu_site is None:
        parser.error("give --gpu-site DIR (the CUDA build) or --cpu-only")
    from bench.engine import make_prompts

    OUT.mkdir(parents=True, exist_ok=True)
    prompts_file = OUT / "prompts.json"
    prompts_file.write_text(json.dumps(make_prompts(N_CELLS)))
    models = build_models()
    failed = False
    print(f"{N_CELLS} cells x 10 labels; tolerance |Δ log-likelihood| <= {TOLERANCE} nats\n")
    print("| model | side | device | s/cell | tokens/s | check |")
    print("|---|---|---|---|---|---|")
    for name, path in models.items():
        cpu = run_side(path, False, prompts_file, None)
        gpu = run_side(path, True, prompts_file, args.gpu_site)
        problems = compare(cpu, gpu, expect_gpu=not args.cpu_only)
        failed |= bool(problems)
        verdict = "; ".join(problems) or "labels identical, Δ within tolerance"
        for label, r in (("CPU", cpu), ("GPU" if not args.cpu_only else "CPU (-1 layers)", gpu)):
            print(
                f"| {name} | {label} | {r['device']} | {r['s_per_cell']:.3f} "
                f"| {r['tokens_per_s']:.1f} | {verdict if r is gpu else ''} |",
                flush=True,
            )
    if args.cpu_only:
        print("\n(no GPU: the CUDA build and offload were not exercised)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
