"""Child-process entry point for llama.cpp work (see worker.py). Not a public interface.

python -m c2s_quantize._worker quantize SRC DST FTYPE NTHREADS
python -m c2s_quantize._worker evaluate REQUEST.json
"""

from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path

from .errors import QuantizeError
from .ggml_backends import load_backends
from .worker import EXIT_USER_ERROR


def quantize(src: str, dst: str, ftype: str, nthread: str) -> int:
    import llama_cpp

    load_backends()

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(ftype)
    params.nthread = int(nthread)
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        print(f"error: llama_model_quantize returned {rc}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


def evaluate(request_file: str) -> int:
    """Run probes on a GGUF; progress goes to stderr as ``@progress <fraction> <message>``."""
    from .evaluate import Tokenized, run_probes, save_runs
    from .llama_lm import LlamaLM, tokenize_only
    from .probes import Probe

    load_backends()
    req = json.loads(Path(request_file).read_text(encoding="utf-8"))
    gguf, out_dir = Path(req["gguf"]), Path(req["out_dir"])
    probes = [Probe(**{**p, "labels": tuple(p["labels"])}) for p in req["probes"]]
    forced = req["forced"]
    if forced is not None:
        forced = [Tokenized(tuple(f["prompt"]), tuple(map(tuple, f["labels"]))) for f in forced]
    # logits_all keeps n_ctx x n_vocab floats: size the context to the longest probe exactly.
    lengths = [
        len(t.prompt) + max(map(len, t.labels), default=0)
        for t in forced or tokenize_only(gguf, probes)
    ]
    lm = LlamaLM(gguf, max(lengths), threads=int(req["threads"]))
    try:
        runs = run_probes(lm, probes, out_dir, forced, progress=_report)
    finally:
        lm.close()
    save_runs(runs, out_dir / "runs.json")
    return 0


def _report(message: str, fraction: float) -> None:
    print(f"@progress {fraction:.4f} {message}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    commands = {"quantize": quantize, "evaluate": evaluate}
    try:
        return commands[argv[0]](*argv[1:])
    except QuantizeError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
