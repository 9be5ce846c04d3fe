"""Carry a checkpoint's tokenizer into GGUF metadata (``tokenizer.ggml.*``).

Two kinds are supported, matching the released C2S models: byte-level BPE from
``tokenizer.json`` (GPT-NeoX / Pythia, llama.cpp model ``gpt2``) and SentencePiece from
``tokenizer.model`` (Gemma, llama.cpp model ``llama``). The token list is padded with
``[PAD<id>]`` (UNUSED) up to the model's embedding rows, as the official converter does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from gguf import GGUFWriter, TokenType

from .errors import QuantizeError
from .fileio import read_optional_json
from .spm_model import read_pieces

_SPECIAL_KINDS = ("bos", "eos", "unk", "pad", "mask")


class TokenizerKind(Enum):
    BPE = "gpt2"  # byte-level BPE (tokenizer.json)
    SPM = "llama"  # SentencePiece (tokenizer.model)


# Token strings used when tokenizer_config.json does not name a special token.
_DEFAULT_SPECIALS: dict[TokenizerKind, dict[str, str]] = {
    TokenizerKind.BPE: {
        "bos": "<|endoftext|>",
        "eos": "<|endoftext|>",
        "unk": "<|endoftext|>",
        "pad": "<|padding|>",
    },
    TokenizerKind.SPM: {
        "bos": "<bos>",
        "eos": "<eos>",
        "unk": "<unk>",
        "pad": "<pad>",
        "mask": "<mask>",
    },
}


@dataclass(frozen=True)
class Vocab:
    """Everything llama.cpp needs to tokenize exactly like the checkpoint's tokenizer."""

    kind: TokenizerKind
    tokens: tuple[str, ...]
    token_types: tuple[int, ...]
    scores: tuple[float, ...] | None
    merges: tuple[str, ...]
    special_ids: Mapping[str, int]
    add_bos: bool

    def add_to(self, writer: GGUFWriter) -> None:
        """Write the ``tokenizer.ggml.*`` keys."""
        writer.add_tokenizer_model(self.kind.value)
        writer.add_tokenizer_pre("gpt-2" if self.kind is TokenizerKind.BPE else "default")
        writer.add_token_list(list(self.tokens))
        writer.add_token_types(list(self.token_types))
        if self.scores is not None:
            writer.add_token_scores(list(self.scores))
        if self.merges:
            writer.add_token_merges(list(self.merges))
        for kind, token_id in self.special_ids.items():
            getattr(writer, f"add_{kind}_token_id")(token_id)
        writer.add_add_bos_token(self.add_bos)
        writer.add_add_eos_token(False)
        if self.kind is TokenizerKind.SPM:
            writer.add_add_space_prefix(False)


def read_vocab(folder: Path, kind: TokenizerKind, n_vocab: int, add_bos_default: bool) -> Vocab:
    """Read the tokenizer files of ``folder`` for a model with ``n_vocab`` embedding rows."""
    tokenizer_json = read_optional_json(folder / "tokenizer.json")
    config = read_optional_json(folder / "tokenizer_config.json")
    if kind is TokenizerKind.BPE:
        tokens, types, scores, merges = _bpe(folder / "tokenizer.json", tokenizer_json, n_vocab)
    else:
        tokens, types, scores = _spm(folder / "tokenizer.model", n_vocab)
        merges = []
    for token_id, (content, special) in _added_tokens(tokenizer_json, config).items():
        _check_id(token_id, n_vocab, folder / "tokenizer.json")
        user = not special and not _looks_special(content)
        tokens[token_id] = content.replace("\u2581", " ") if user else content
        types[token_id] = TokenType.USER_DEFINED if user else TokenType.CONTROL
        if scores is not None:
            scores[token_id] = -1000.0
    ids = {t: i for i, t in enumerate(tokens) if types[i] != TokenType.UNUSED}
    special_ids = {
        k: ids[name]
        for k in _SPECIAL_KINDS
        if (name := _special_name(config, k) or _DEFAULT_SPECIALS[kind].get(k)) in ids
    }
    return Vocab(
        kind,
        tuple(tokens),
        tuple(int(t) for t in types),
        tuple(scores) if scores is not None else None,
        tuple(merges),
        special_ids,
        _adds_bos(tokenizer_json, config, add_bos_default),
    )


def _bpe(
    path: Path, tj: dict[str, Any] | None, n_vocab: int
) -> tuple[list[str], list[int], None, list[str]]:
    if tj is None:
        raise QuantizeError("tokenizer.json is missing", "download it with the checkpoint", path)
    model = tj.get("model") or {}
    if model.get("type") != "BPE" or not _is_byte_level(tj.get("pre_tokenizer")):
        raise QuantizeError(
            "tokenizer is not a byte-level BPE tokenizer (GPT-NeoX style)",
            "only the tokenizers of the released C2S models are supported",
            path,
        )
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [int(TokenType.UNUSED)] * n_vocab
    for text, token_id in model.get("vocab", {}).items():
        _check_id(token_id, n_vocab, path)
        tokens[token_id], types[token_id] = text, int(TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return tokens, types, None, merges


def _spm(path: Path, n_vocab: int) -> tuple[list[str], list[int], list[float]]:
    if not path.is_file():
        raise QuantizeError(
            "tokenizer.model (SentencePiece) is missing", "download it with the checkpoint", path
        )
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [int(TokenType.UNUSED)] * n_vocab
    scores = [-1000.0] * n_vocab
    for token_id, piece in enumerate(read_pieces(path)):
        _check_id(token_id, n_vocab, path)
        tokens[token_id], types[token_id], scores[token_id] = piece.text, piece.type, piece.score
    return tokens, types, scores


def _is_byte_level(pre: Any) -> bool:
    if not isinstance(pre, dict):
        return False
    if pre.get("type") == "Sequence":
        return any(_is_byte_level(p) for p in pre.get("pretokenizers", []))
    return pre.get("type") == "ByteLevel" and not pre.get("add_prefix_space", False)


def _added_tokens(
    tj: dict[str, Any] | None, config: dict[str, Any] | None
) -> dict[int, tuple[str, bool]]:
    """Added tokens by id: (content, special), from tokenizer.json and tokenizer_config.json."""
    added = {
        int(a["id"]): (a["content"], bool(a.get("special")))
        for a in (tj or {}).get("added_tokens", [])
    }
    for token_id, a in (config or {}).get("added_tokens_decoder", {}).items():
        added.setdefault(int(token_id), (a["content"], bool(a.get("special"))))
    return added


def _adds_bos(tj: dict[str, Any] | None, config: dict[str, Any] | None, default: bool) -> bool:
    """Whether the HF tokenizer prepends BOS: its post-processor template, else the config flag."""
    post = (tj or {}).get("post_processor") or {}
    for proc in post.get("processors", [post]):
        if proc.get("type") == "TemplateProcessing":
            single = proc.get("single") or [{}]
            return "SpecialToken" in single[0]
    value = (config or {}).get("add_bos_token")
    return bool(value) if value is not None else default


def _special_name(config: dict[str, Any] | None, kind: str) -> str | None:
    value = (config or {}).get(f"{kind}_token")
    return value.get("content") if isinstance(value, dict) else value


def _looks_special(text: str) -> bool:
    # Some checkpoints mark control tokens as non-special (as llama.cpp's converter notes).
    return (
        (text.startswith("<|") and text.endswith("|>"))
        or text in ("<pad>", "<mask>")
        or (text.startswith("<unused") and text.endswith(">"))
    )


def _check_id(token_id: int, n_vocab: int, path: Path) -> None:
    if not 0 <= token_id < n_vocab:
        raise QuantizeError(
            f"token id {token_id} does not fit the model's {n_vocab} embedding rows",
            "the tokenizer files do not belong to this checkpoint",
            path,
        )
