"""Builders for tiny real C2S-shaped checkpoints (GPT-NeoX + BPE, Gemma-2 + SentencePiece).

Used by the session fixtures (tests/model_fixtures.py), the benchmarks and the demo model's
training script (resources/demo/train_demo_model.py). Imports torch/transformers, so only
test, benchmark and training code uses it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from c2s_quantize.probes import load_probes

# What both tiny models share: width, heads, context and a wide initialisation.
TINY = dict(
    hidden_size=256, num_attention_heads=4, max_position_embeddings=512, initializer_range=0.05
)
EXTRA_TEXT = "Unusual  spacing\tand digits 12345, ümlauts, emoji 🧬 and a newline\nAt the end."


def corpus() -> list[str]:
    """Training text for the tokenizers: the shipped prompts, labels and a few odd strings."""
    probes = load_probes()
    texts = [p.text for p in probes] + [p.continuation(lab) for p in probes for lab in p.labels]
    return texts * 4 + [EXTRA_TEXT]


def bpe_tokenizer(folder: Path, texts: Iterable[str], vocab_size: int) -> Any:
    """Byte-level BPE like Pythia's (<|endoftext|> = 0, <|padding|> = 1) trained on ``texts``
    and saved to ``folder``; returns the transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|padding|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|padding|>",
    )
    fast.save_pretrained(folder)
    return fast


def train_bpe_tokenizer(folder: Path, vocab_size: int = 1000) -> int:
    """:func:`bpe_tokenizer` on :func:`corpus`; returns its size."""
    return len(bpe_tokenizer(folder, corpus(), vocab_size))


def sentencepiece_model(folder: Path, lines: Iterable[str], vocab_size: int, **options) -> Path:
    """SentencePiece BPE with byte fallback like Gemma's (pad 0, eos 1, bos 2, unk 3), no
    normalisation, trained on ``lines`` (``options``: more trainer settings); returns
    ``folder/tokenizer.model``. The corpus file and the ``.vocab`` listing are removed."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    text = folder / "corpus.txt"
    text.write_text("\n".join(lines), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(text),
        model_prefix=str(folder / "tokenizer"),
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        allow_whitespace_only_pieces=True,
        split_digits=True,
        character_coverage=1.0,
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        minloglevel=2,
        **options,
    )
    text.unlink()
    (folder / "tokenizer.vocab").unlink()
    return folder / "tokenizer.model"


def train_spm_tokenizer(folder: Path, vocab_size: int = 600) -> int:
    """:func:`sentencepiece_model` on :func:`corpus` with Gemma's piece names, as a Gemma
    tokenizer; returns its size."""
    import sentencepiece as spm
    from transformers import GemmaTokenizer
    from transformers.tokenization_utils_base import generate_merges

    pieces = dict(pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>")
    model = sentencepiece_model(folder, corpus(), vocab_size, **pieces)
    sp = spm.SentencePieceProcessor(model_file=str(model))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    GemmaTokenizer(vocab=vocab, merges=generate_merges(vocab), add_bos_token=True).save_pretrained(
        folder
    )
    return sp.get_piece_size()


def train_briefly(model, folder: Path, steps: int) -> None:
    """A few AdamW steps on the shipped prompts + answers, so next-token predictions are
    confident like a real model's (a random model's near-flat logits make top-1 fragile)."""
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    probes = load_probes()
    texts = [p.text + (p.continuation(p.expected) if p.expected else "") for p in probes]
    batch = [torch.tensor(tok(t)["input_ids"]) for t in texts]
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    for step in range(steps):
        ids = batch[step % len(batch)].unsqueeze(0)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


def gptneox_config(n_vocab: int, **overrides) -> Any:
    """GPT-NeoX shaped like C2S-Pythia, small: hidden 256, 2 layers, 4 heads, ffn 1024, rotary
    25 %, parallel residual, untied embeddings; ``overrides`` change any setting."""
    from transformers import GPTNeoXConfig

    params = dict(
        vocab_size=n_vocab,
        **TINY,
        num_hidden_layers=2,
        intermediate_size=1024,
        rotary_pct=0.25,
        use_parallel_residual=True,
        tie_word_embeddings=False,
    )
    return GPTNeoXConfig(**(params | overrides))


def _seeded(model_class: Any, config: Any, folder: Path, train_steps: int, seed: int) -> Any:
    """A model of ``config`` with weights drawn after ``torch.manual_seed(seed)``, then
    :func:`train_briefly` for ``train_steps`` (none: untrained)."""
    import torch

    torch.manual_seed(seed)
    model = model_class(config)
    if train_steps:
        train_briefly(model, folder, train_steps)
    return model


def save_gptneox(
    folder: Path, n_vocab: int, *, train_steps: int = 0, seed: int = 0, **overrides
) -> None:
    """Random GPT-NeoX of :func:`gptneox_config`; transformers 5 stores the rotary fraction as
    ``rope_parameters.partial_rotary_factor``."""
    from transformers import GPTNeoXForCausalLM

    config = gptneox_config(n_vocab, **overrides)
    _seeded(GPTNeoXForCausalLM, config, folder, train_steps, seed).save_pretrained(folder)


def use_legacy_rotary(folder: Path) -> None:
    """Rewrite config.json the transformers-4 way (``rotary_pct``, ``rotary_emb_base``)."""
    path = folder / "config.json"
    config = json.loads(path.read_text())
    rope = config.pop("rope_parameters")
    config["rotary_pct"] = rope["partial_rotary_factor"]
    config["rotary_emb_base"] = rope["rope_theta"]
    path.write_text(json.dumps(config, indent=2))


def save_gemma2(folder: Path, n_vocab: int, *, train_steps: int = 0, seed: int = 0) -> None:
    """Random Gemma-2 in BF16, sharded: GQA (4 heads / 2 KV), sliding window 16, soft-caps."""
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM

    config = Gemma2Config(
        vocab_size=n_vocab,
        **TINY,
        num_hidden_layers=4,
        num_key_value_heads=2,
        head_dim=64,
        intermediate_size=768,
        sliding_window=16,
        attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0,
        query_pre_attn_scalar=64,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    model = _seeded(Gemma2ForCausalLM, config, folder, train_steps, seed)
    model.to(torch.bfloat16).save_pretrained(folder, max_shard_size="1MB")


def copy_checkpoint(src: Path, dst: Path) -> Path:
    """A writable copy of a checkpoint folder (for tests that damage it)."""
    shutil.copytree(src, dst)
    return dst
