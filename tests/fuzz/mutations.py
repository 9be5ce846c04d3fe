"""Byte-level mutations of a valid file: flips, truncation, insertions, absurd numbers."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

ABSURD = (0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1, 2**64 - 1)
Op = tuple


def ops(size: int, fields: Sequence[tuple[int, int]] = (), focus: int = 0) -> st.SearchStrategy:
    """Lists of mutation ops for a file of ``size`` bytes.

    ``fields``: ``(offset, width)`` of known header fields (lengths, counts, types) that
    ``("field", i, value)`` overwrites with absurd values; ``focus``: positions below it (the
    header) are drawn more often.
    """
    pos = st.integers(0, size - 1)
    if focus:
        pos = st.one_of(st.integers(0, min(focus, size) - 1), pos)
    choices = [
        st.tuples(st.just("flip"), pos, st.integers(1, 255)),
        st.tuples(st.just("truncate"), pos),
        st.tuples(st.just("insert"), pos, st.binary(min_size=1, max_size=64)),
        st.tuples(st.just("delete"), pos, st.integers(1, 64)),
        st.tuples(st.just("u64"), pos, st.sampled_from(ABSURD)),
        st.tuples(st.just("u32"), pos, st.sampled_from([v for v in ABSURD if v < 2**32])),
    ]
    if fields:
        choices.append(
            st.tuples(st.just("field"), st.integers(0, len(fields) - 1), st.sampled_from(ABSURD))
        )
    return st.lists(st.one_of(choices), min_size=1, max_size=4)


def apply(data: bytes, mutations: Sequence[Op], fields: Sequence[tuple[int, int]] = ()) -> bytes:
    """``data`` with ``mutations`` applied in order."""
    out = bytearray(data)
    for op in mutations:
        kind = op[0]
        if not out:
            break
        if kind == "field":
            offset, width = fields[op[1]]
            kind, op = ("u64" if width == 8 else "u32"), ("", offset, op[2])
        p = op[1] % len(out)
        if kind == "flip":
            out[p] ^= op[2]
        elif kind == "truncate":
            del out[p:]
        elif kind == "insert":
            out[p:p] = op[2]
        elif kind == "delete":
            del out[p : p + op[2]]
        elif kind in ("u64", "u32"):
            width = 8 if kind == "u64" else 4
            value = op[2] % (1 << (8 * width))
            out[p : p + width] = value.to_bytes(width, "little")[: len(out) - p]
    return bytes(out)
