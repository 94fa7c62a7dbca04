"""Exact cosine neighbour search over unit-length vectors, a block of rows at a time.

Vectors come from `localgen.vectors.encoder` (rows of norm 1), so a dot product is a
cosine. Every search multiplies BLOCK query rows at once: memory is O(BLOCK * n), never
O(n^2), and the time is O(n * m) for n queries against m vectors. Planning (the nearest
real examples), curation (duplicates, contamination) and the report (diversity, similarity
to real) all search through this module.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

BLOCK = 1024  # query rows per matrix product


def blocks(queries: np.ndarray, others: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, cosines of queries[first : first + BLOCK] against every one of others)."""
    for start in range(0, len(queries), BLOCK):
        yield start, queries[start : start + BLOCK] @ others.T


def nearest(queries: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query, the index of the most similar of `others` and that cosine
    (index 0 and cosine -1 when there are no others)."""
    if len(others) == 0 or len(queries) == 0:
        return np.zeros(len(queries), dtype=np.int64), np.full(len(queries), -1.0)
    where, best = [], []
    for _, sims in blocks(queries, others):
        where.append(sims.argmax(axis=1))
        best.append(sims.max(axis=1))
    return np.concatenate(where), np.concatenate(best)


def top_k(queries: np.ndarray, others: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """For each query, the indices of its k most similar `others`, most similar first (a
    stable order: ties keep the order of `others`), and their cosines; shape (n, k')."""
    k = min(k, len(others))
    if k <= 0 or len(queries) == 0:
        empty = np.zeros((len(queries), 0))
        return empty.astype(np.int64), empty
    where, best = [], []
    for _, sims in blocks(queries, others):
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        where.append(order)
        best.append(np.take_along_axis(sims, order, axis=1))
    return np.concatenate(where), np.concatenate(best)


def earlier_pairs(vectors: np.ndarray, threshold: float) -> Iterator[tuple[int, int, float]]:
    """Every (i, j, cosine) with j < i and cosine >= threshold, i ascending: each block of
    rows is compared only with the rows up to its end."""
    for start in range(0, len(vectors), BLOCK):
        sims = vectors[start : start + BLOCK] @ vectors[: start + BLOCK].T
        for r, c in zip(*np.nonzero(sims >= threshold), strict=True):
            i = start + int(r)
            if int(c) < i:
                yield i, int(c), float(sims[r, c])
