"""Slow, obviously-correct references used as test oracles."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def slow_sentences(matrix, genes: list[str], top_k: int | None = None) -> list[str]:
    """One cell at a time, in plain Python: the documented C2S rule.

    Upper-case names; sum columns that share an upper-cased name; keep values > 0; order by
    descending value, ties by the word in code-point order; keep ``top_k``.
    """
    dense = np.asarray(sp.csr_matrix(matrix).todense(), dtype=np.float64)
    out = []
    for row in dense:
        totals: dict[str, float] = {}
        for name, value in zip(genes, row, strict=True):
            if name:
                word = name.upper()
                totals[word] = totals.get(word, 0.0) + float(value)
        items = sorted(((w, v) for w, v in totals.items() if v > 0), key=lambda t: (-t[1], t[0]))
        words = [w for w, _ in items]
        out.append(" ".join(words[:top_k] if top_k else words))
    return out


def same_up_to_ties(ours: str, theirs: str, values: dict[str, float]) -> bool:
    """True when two sentences list the same words with the same value at every position."""
    a, b = ours.split(" ") if ours else [], theirs.split(" ") if theirs else []
    if len(a) != len(b) or set(a) != set(b):
        return False
    return all(values[x] == values[y] for x, y in zip(a, b, strict=True))
