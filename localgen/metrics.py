"""Diversity metrics of a set of texts, as Li et al. (EMNLP 2023) measure synthetic data.

- distinct-n: unique n-grams over all n-grams, over the whole set (Li et al. 2016).
- Remote Clique: the mean cosine distance of each text to all the others.
- Chamfer distance: the mean cosine distance of each text to its nearest other text.
Both embedding metrics take unit-length vectors (`localgen.embed`); higher is more
diverse. Pairwise work is done in blocks, so memory stays O(block * n) not O(n^2).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import numpy as np

_WORD = re.compile(r"[a-z0-9']+")
BLOCK = 1024


def words(text: str) -> list[str]:
    """Lower-case word tokens: the unit of distinct-n."""
    return _WORD.findall(text.lower())


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique n-grams / total n-grams across `texts` (0.0 when there are none)."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        tokens = words(text)
        grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def _similarity_blocks(vectors: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    for start in range(0, len(vectors), BLOCK):
        yield start, vectors[start : start + BLOCK] @ vectors.T


def remote_clique(vectors: np.ndarray) -> float:
    """Mean over texts of the mean cosine distance to every other text."""
    n = len(vectors)
    if n < 2:
        return 0.0
    total = 0.0
    for _, sims in _similarity_blocks(vectors):
        # Each row includes the text itself (distance 0): sum over all, divide by n - 1.
        total += float((1.0 - sims).sum(axis=1).sum()) / (n - 1)
    return total / n


def chamfer(vectors: np.ndarray) -> float:
    """Mean over texts of the cosine distance to the nearest other text."""
    n = len(vectors)
    if n < 2:
        return 0.0
    nearest = np.empty(n, dtype=np.float64)
    for start, sims in _similarity_blocks(vectors):
        rows = np.arange(len(sims))
        sims[rows, start + rows] = -np.inf  # not the text itself
        nearest[start : start + len(sims)] = 1.0 - sims.max(axis=1)
    return float(nearest.mean())
