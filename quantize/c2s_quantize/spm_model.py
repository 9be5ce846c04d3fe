"""Read the pieces of a SentencePiece ``tokenizer.model`` without the sentencepiece package.

The file is a protobuf ``ModelProto``; field 1 repeats ``SentencePiece {1: piece, 2: score,
3: type}``. Only those fields are decoded; everything else is skipped.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import QuantizeError

NORMAL = 1  # SentencePiece.Type default; the numbering equals gguf.TokenType


@dataclass(frozen=True)
class Piece:
    text: str
    score: float
    type: int


def read_pieces(path: Path) -> list[Piece]:
    """All pieces of a SentencePiece model, in id order."""
    try:
        return [_piece(v) for f, _, v in _fields(path.read_bytes()) if f == 1]
    except (IndexError, ValueError, UnicodeDecodeError, struct.error):
        raise QuantizeError(
            "not a valid SentencePiece model", "download tokenizer.model again", path
        ) from None


def _piece(buf: bytes | int) -> Piece:
    if not isinstance(buf, bytes):
        raise ValueError("piece is not a message")
    text, score, kind = "", 0.0, NORMAL
    for field, wire, value in _fields(buf):
        if field == 1 and isinstance(value, bytes):
            text = value.decode("utf-8")
        elif field == 2 and wire == 5 and isinstance(value, bytes):
            (score,) = struct.unpack("<f", value)
        elif field == 3 and isinstance(value, int):
            kind = value
    return Piece(text, score, kind)


def _fields(buf: bytes) -> Iterator[tuple[int, int, bytes | int]]:
    """(field number, wire type, value) for each field of one protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield field, wire, value
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise ValueError("truncated field")
            yield field, wire, buf[pos : pos + n]
            pos += n
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            yield field, wire, buf[pos : pos + n]
            pos += n
        else:
            raise ValueError(f"unsupported wire type {wire}")


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
