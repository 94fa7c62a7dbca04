"""Near-duplicate search at scale: exact blocks against approximate indexes.

Curation's near-duplicate rule needs, for every row, the earlier rows within a cosine
threshold (0.95 by default). localgen does it exactly, in blocks of one matrix product:
O(n^2) time. This measures that against two maintained approximate-neighbour libraries,
usearch (HNSW) and faiss (HNSW, `IndexHNSWFlat` on inner product), on the same vectors:
the time to build and search, and the recall of the pairs above the threshold (the exact
search is the truth, so it is only run where it is affordable).

The vectors are sentence-embedding-like and need no model: unit vectors in 384
dimensions, drawn around 5% as many centres, at a spread that gives every row a few
neighbours above 0.95 and most none. Seeded: the same command gives the same vectors.
Run: .venv/bin/python bench/neighbours.py [--rows 20000 100000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

THRESHOLD = 0.95
K = 16  # neighbours asked of an approximate index per row


def vectors(n: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 20), dim)).astype(np.float32)
    which = rng.integers(0, len(centres), n)
    spread = rng.choice([0.08, 0.3, 1.0], size=(n, 1), p=[0.3, 0.3, 0.4]).astype(np.float32)
    out = centres[which] / np.sqrt(dim) + spread * rng.standard_normal((n, dim)).astype(
        np.float32
    ) / np.sqrt(dim)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def exact_pairs(x: np.ndarray) -> set[tuple[int, int]]:
    from localgen.vectors.neighbours import earlier_pairs

    return {(i, j) for i, j, _ in earlier_pairs(x, THRESHOLD)}


def usearch_pairs(x: np.ndarray) -> set[tuple[int, int]]:
    from usearch.index import Index

    index = Index(ndim=x.shape[1], metric="ip", dtype="f32")
    index.add(np.arange(len(x)), x)
    found = index.search(x, K)
    pairs = set()
    for i, (keys, distances) in enumerate(zip(found.keys, found.distances, strict=True)):
        for j, d in zip(keys, distances, strict=True):
            if j < i and 1.0 - d >= THRESHOLD:
                pairs.add((i, int(j)))
    return pairs


def faiss_pairs(x: np.ndarray) -> set[tuple[int, int]]:
    import faiss

    index = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.add(x)
    sims, keys = index.search(x, K)
    pairs = set()
    for i in range(len(x)):
        for j, s in zip(keys[i], sims[i], strict=True):
            if 0 <= j < i and s >= THRESHOLD:
                pairs.add((i, int(j)))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--exact-up-to", type=int, default=100_000)
    args = parser.parse_args()
    print("| rows | method | seconds | pairs >= 0.95 | recall |")
    print("|---:|---|---:|---:|---:|")
    for n in args.rows:
        x = vectors(n)
        truth = None
        methods = [("usearch", usearch_pairs), ("faiss", faiss_pairs)]
        if n <= args.exact_up_to:
            methods.insert(0, ("exact", exact_pairs))
        for name, method in methods:
            start = time.perf_counter()
            pairs = method(x)
            seconds = time.perf_counter() - start
            if name == "exact":
                truth = pairs
            recall = "-" if truth is None else f"{len(pairs & truth) / max(1, len(truth)):.4f}"
            print(f"| {n:,} | {name} | {seconds:.1f} | {len(pairs):,} | {recall} |", flush=True)


if __name__ == "__main__":
    main()
