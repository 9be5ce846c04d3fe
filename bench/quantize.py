"""Benchmark c2s-quantize on a generated GPT-NeoX-shaped checkpoint.

Prints, per output type: wall time, the converter's peak RSS relative to the largest source
shard (target <= 1.5x), the peak RSS of the largest process including llama.cpp's quantizer
child (quantized types), and the file size.

    python bench/quantize.py            # ~1 GB F32 checkpoint in 4 shards (Pythia-410m widths)
    python bench/quantize.py --small    # a few MB, for a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "quantize"))  # tokenizer builder shared with the tests

TYPES = ("f32", "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0")
FULL = dict(hidden=1024, layers=12, ffn=4096, vocab=50304, shards=4)  # 254M params, 1.02 GB
SMALL = dict(hidden=256, layers=2, ffn=1024, vocab=4096, shards=2)
TARGET_RATIO = 1.5


def neox_tensors(hidden: int, layers: int, ffn: int, vocab: int) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a GPT-NeoX checkpoint (as transformers saves it)."""
    shapes: dict[str, tuple[int, ...]] = {"gpt_neox.embed_in.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"gpt_neox.layers.{i}."
        shapes |= {
            p + "input_layernorm.weight": (hidden,),
            p + "input_layernorm.bias": (hidden,),
            p + "post_attention_layernorm.weight": (hidden,),
            p + "post_attention_layernorm.bias": (hidden,),
            p + "attention.query_key_value.weight": (3 * hidden, hidden),
            p + "attention.query_key_value.bias": (3 * hidden,),
            p + "attention.dense.weight": (hidden, hidden),
            p + "attention.dense.bias": (hidden,),
            p + "mlp.dense_h_to_4h.weight": (ffn, hidden),
            p + "mlp.dense_h_to_4h.bias": (ffn,),
            p + "mlp.dense_4h_to_h.weight": (hidden, ffn),
            p + "mlp.dense_4h_to_h.bias": (hidden,),
        }
    shapes |= {
        "gpt_neox.final_layer_norm.weight": (hidden,),
        "gpt_neox.final_layer_norm.bias": (hidden,),
        "embed_out.weight": (vocab, hidden),
    }
    return shapes


def make_checkpoint(folder: Path, hidden: int, layers: int, ffn: int, vocab: int, shards: int):
    """Random F32 weights in ``shards`` safetensors files + index, config and a BPE tokenizer."""
    from quantize_builders import train_bpe_tokenizer
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    train_bpe_tokenizer(folder)
    shapes = neox_tensors(hidden, layers, ffn, vocab)
    budget = sum(4 * int(np.prod(s)) for s in shapes.values()) / shards
    groups: list[list[str]] = [[]]
    for name in shapes:
        if sum(4 * int(np.prod(shapes[n])) for n in groups[-1]) >= budget:
            groups.append([])
        groups[-1].append(name)
    rng, weight_map = np.random.default_rng(0), {}
    for i, names in enumerate(groups, 1):
        file = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        tensors = {n: rng.standard_normal(shapes[n], dtype=np.float32) * 0.02 for n in names}
        save_file(tensors, str(folder / file))
        weight_map |= dict.fromkeys(names, file)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    config = {
        "architectures": ["GPTNeoXForCausalLM"],
        "model_type": "gpt_neox",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": hidden // 64,
        "intermediate_size": ffn,
        "vocab_size": vocab,
        "max_position_embeddings": 2048,
        "rotary_pct": 0.25,
        "rotary_emb_base": 10000,
        "use_parallel_residual": True,
        "layer_norm_eps": 1e-5,
        "hidden_act": "gelu",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))


_CHILD = """
import json, sys
from pathlib import Path
from c2s_quantize.pipeline import quantize_checkpoint
if sys.argv[3] != "-":
    quantize_checkpoint(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
status = Path("/proc/self/status").read_text().splitlines()
print(json.dumps({k: int(v.split()[0]) * 1024 for k, v in (x.split(":", 1) for x in status)
                  if k == "VmHWM"}))
"""


def run_measured(src: Path, out: Path, qtype: str) -> tuple[float, int, int]:
    """Wall seconds; converter peak RSS (its own VmHWM); peak RSS of the largest process of
    the tree (wait4 ru_maxrss, which includes llama.cpp's quantizer child). The bench process
    stays small because ru_maxrss also counts the parent's RSS at fork time."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(src), str(out), qtype], stdout=subprocess.PIPE
    )
    stdout = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"conversion to {qtype} failed")
    own = json.loads(stdout.decode().strip().splitlines()[-1])["VmHWM"]
    return time.monotonic() - start, own, usage.ru_maxrss * 1024  # ru_maxrss is in KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny checkpoint, quick run")
    parser.add_argument("--types", default=",".join(TYPES), help="comma-separated output types")
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)  # internal
    args = parser.parse_args()
    dims = SMALL if args.small else FULL
    if args.generate:
        make_checkpoint(args.generate, **dims)
        return
    with tempfile.TemporaryDirectory(prefix="c2s-quantize-bench-") as tmp:
        src = Path(tmp) / "checkpoint"
        t0 = time.monotonic()
        # generated in a child so this process stays small (see run_measured)
        flags = ["--small"] if args.small else []
        subprocess.run([sys.executable, __file__, *flags, "--generate", str(src)], check=True)
        shards = sorted(src.glob("*.safetensors"))
        largest = max(p.stat().st_size for p in shards)
        total = sum(p.stat().st_size for p in shards)
        print(
            f"checkpoint: GPT-NeoX {dims}, {len(shards)} shards, {total / 1e9:.3f} GB F32, "
            f"largest shard {largest / 1e6:.0f} MB (generated in {time.monotonic() - t0:.0f} s)"
        )
        _, base, _ = run_measured(src, Path(tmp) / "none", "-")
        print(f"baseline RSS of python + c2s_quantize import: {base / 1e6:.0f} MB")
        print(
            f"{'type':8} {'time s':>7} {'convert RSS MB':>15} {'/shard':>7} "
            f"{'max RSS MB (incl. quantizer)':>29} {'size MB':>8} {'bits/w':>7}"
        )
        n_params = total / 4
        for qtype in args.types.split(","):
            out = Path(tmp) / f"model.{qtype}.gguf"
            seconds, own, tree = run_measured(src, out, qtype)
            size = out.stat().st_size
            print(
                f"{qtype:8} {seconds:7.1f} {own / 1e6:15.0f} {own / largest:7.2f} "
                f"{tree / 1e6:29.0f} {size / 1e6:8.1f} {8 * size / n_params:7.2f}"
            )
            out.unlink()
        print(f"target: converter peak RSS <= {TARGET_RATIO}x the largest source shard")


if __name__ == "__main__":
    main()
