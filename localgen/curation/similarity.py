"""How close a row is to another text: shared runs of words (copied passages) and
near-duplicate groups by cosine. The vector search itself is `localgen.vectors.neighbours`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from localgen.text import ngrams
from localgen.vectors.neighbours import earlier_pairs


def longest_common_span(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest run of consecutive tokens that `a` and `b` share."""
    best = 0
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0] * (len(b) + 1)
        for j, other in enumerate(b, start=1):
            if token == other:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def copied_spans(
    texts: Sequence[Sequence[str]], sources: Sequence[Sequence[str]], min_words: int
) -> dict[int, tuple[int, int]]:
    """For each text sharing a run of >= min_words tokens with a source:
    (index of the source with the longest shared run, its length)."""
    index: dict[tuple[str, ...], set[int]] = defaultdict(set)
    for s, tokens in enumerate(sources):
        for gram in ngrams(tokens, min_words):
            index[gram].add(s)
    out = {}
    for i, tokens in enumerate(texts):
        candidates = set().union(*(index.get(g, ()) for g in ngrams(tokens, min_words)))
        if candidates:
            out[i] = max(
                ((s, longest_common_span(tokens, sources[s])) for s in sorted(candidates)),
                key=lambda pair: pair[1],
            )
    return out


def greedy_duplicates(vectors: np.ndarray, threshold: float) -> dict[int, tuple[int, float]]:
    """Rows within `threshold` cosine of an earlier row that is itself kept:
    row -> (the kept row it repeats, cosine). The first row of each group is kept."""
    earlier: dict[int, list[tuple[int, float]]] = {}
    for i, j, cosine in earlier_pairs(vectors, threshold):
        earlier.setdefault(i, []).append((j, cosine))
    out: dict[int, tuple[int, float]] = {}
    for i in sorted(earlier):
        kept = [(j, c) for j, c in earlier[i] if j not in out]
        if kept:
            out[i] = max(kept, key=lambda pair: pair[1])
    return out
