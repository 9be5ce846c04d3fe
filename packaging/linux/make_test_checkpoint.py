"""Write a tiny GPT-NeoX checkpoint (BPE tokenizer, safetensors) for the frozen c2s-quantize check.

Run with the dev venv (torch, transformers, tokenizers):  python make_test_checkpoint.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "quantize"))

import quantize_builders as qb  # noqa: E402


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    n_vocab = qb.train_bpe_tokenizer(out)
    qb.save_gptneox(out, n_vocab)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
