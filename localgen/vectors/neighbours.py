"""Cosine neighbour search over unit-length vectors: exact, a block of rows at a time,
and, for the pairs within one set above EXACT_PAIRS_UP_TO rows, an approximate index.

Vectors come from `localgen.vectors.encoder` (rows of norm 1), so a dot product is a
cosine. Every exact search multiplies BLOCK query rows at once: memory is O(BLOCK * n),
never O(n^2), and the time is O(n * m) for n queries against m vectors. Planning (the
nearest real examples), curation (duplicates, contamination) and the report (diversity,
similarity to real) all search through this module.

The pairs of one set (`earlier_pairs`, curation's near-duplicates) are O(n^2): measured
(`bench/neighbours.py`, 2 CPUs), 3.3 s at 20,000 rows and 78 s at 100,000, so a million
would take hours. Above EXACT_PAIRS_UP_TO rows they come from faiss's HNSW index
(inner product, M=32, the K nearest of each row, built on one thread so the same rows
give the same pairs): 34 s at 100,000 rows, 95% of the exact pairs found there.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

BLOCK = 1024  # query rows per matrix product
EXACT_PAIRS_UP_TO = 100_000  # rows; above: the approximate index (pair_search says which)
HNSW_M = 32  # links per node of the index
K = 16  # neighbours asked of the index per row


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


def pair_search(n: int) -> str:
    """How `earlier_pairs` searches n rows, as curation records it."""
    if n <= EXACT_PAIRS_UP_TO:
        return "exact"
    return f"approximate (faiss HNSW, M={HNSW_M}, the {K} nearest of each row)"


def earlier_pairs(vectors: np.ndarray, threshold: float) -> Iterator[tuple[int, int, float]]:
    """Every (i, j, cosine) with j < i and cosine >= threshold, i ascending: each block of
    rows is compared only with the rows up to its end. Above EXACT_PAIRS_UP_TO rows: the
    pairs among each row's K nearest (`pair_search`)."""
    if len(vectors) > EXACT_PAIRS_UP_TO:
        yield from _approximate_pairs(vectors, threshold)
        return
    for start in range(0, len(vectors), BLOCK):
        sims = vectors[start : start + BLOCK] @ vectors[: start + BLOCK].T
        for r, c in zip(*np.nonzero(sims >= threshold), strict=True):
            i = start + int(r)
            if int(c) < i:
                yield i, int(c), float(sims[r, c])


def _approximate_pairs(vectors: np.ndarray, threshold: float) -> Iterator[tuple[int, int, float]]:
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    index = faiss.IndexHNSWFlat(x.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # insertion order decides the graph: one thread, one graph
    try:
        index.add(x)
    finally:
        faiss.omp_set_num_threads(threads)
    for start in range(0, len(x), BLOCK * 16):
        sims, keys = index.search(x[start : start + BLOCK * 16], K)
        for r in range(len(keys)):
            i = start + r
            found = sorted(
                (int(j), float(s))
                for j, s in zip(keys[r], sims[r], strict=True)
                if 0 <= j < i and s >= threshold
            )
            for j, s in found:
                yield i, j, s
