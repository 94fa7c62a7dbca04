"""Quality metrics of a set of texts, as Li et al. (EMNLP 2023) measure synthetic data.

- distinct-n: unique n-grams over all n-grams, over the whole set (Li et al. 2016).
- self-BLEU: the mean BLEU-4 of each text against all the others (Zhu et al. 2018);
  lower is more diverse.
- Remote Clique: the mean cosine distance of each text to all the others.
- Chamfer distance: the mean cosine distance of each text to its nearest other text.
- similarity to real: for each real text, the mean cosine of its k most similar
  synthetic texts, averaged over the real texts (Li et al., k = 5).
Embedding metrics take unit-length vectors (`localgen.vectors.encoder`). Pairwise work is done in
blocks (`localgen.vectors.neighbours`), so memory stays O(block * n) not O(n^2).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from localgen.text import ngrams, words
from localgen.vectors.neighbours import blocks, top_k


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique n-grams / total n-grams across `texts` (0.0 when there are none)."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        tokens = words(text)
        grams = ngrams(tokens, n)
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def remote_clique(vectors: np.ndarray) -> float:
    """Mean over texts of the mean cosine distance to every other text."""
    n = len(vectors)
    if n < 2:
        return 0.0
    total = 0.0
    for _, sims in blocks(vectors, vectors):
        # Each row includes the text itself (distance 0): sum over all, divide by n - 1.
        total += float((1.0 - sims).sum(axis=1).sum()) / (n - 1)
    return total / n


def chamfer(vectors: np.ndarray) -> float:
    """Mean over texts of the cosine distance to the nearest other text."""
    n = len(vectors)
    if n < 2:
        return 0.0
    nearest = np.empty(n, dtype=np.float64)
    for start, sims in blocks(vectors, vectors):
        rows = np.arange(len(sims))
        sims[rows, start + rows] = -np.inf  # not the text itself
        nearest[start : start + len(sims)] = 1.0 - sims.max(axis=1)
    return float(nearest.mean())


def _bleu(
    counts: list[Counter[tuple[str, ...]]],
    length: int,
    reference_count: Callable[[int, tuple[str, ...]], int],
    closest: int,
) -> float:
    """BLEU from the hypothesis' n-gram counts per order; `reference_count(order, gram)` is
    the largest count of `gram` in any one reference."""
    log_sum = 0.0
    for order, grams in enumerate(counts, start=1):
        total = max(1, sum(grams.values()))  # as NLTK: a too-short text counts 0 of 1
        matches = sum(min(c, reference_count(order, g)) for g, c in grams.items())
        log_sum += math.log((matches or 0.1) / total)  # NLTK smoothing method 1
    penalty = 1.0 if length > closest else math.exp(1 - closest / length)
    return penalty * math.exp(log_sum / len(counts))


def _counts(tokens: Sequence[str], n: int) -> list[Counter[tuple[str, ...]]]:
    return [Counter(ngrams(tokens, order)) for order in range(1, n + 1)]


def _closest_length(length: int, others: Sequence[int]) -> int:
    return min((abs(r - length), r) for r in others)[1]


def bleu(hypothesis: Sequence[str], references: Sequence[Sequence[str]], n: int = 4) -> float:
    """Sentence BLEU-n of token lists: clipped n-gram precisions (a count of 0 becomes 0.1,
    NLTK's smoothing method 1, which Texygen's self-BLEU uses), their geometric mean, and
    the brevity penalty against the reference closest in length."""
    if not hypothesis or not references:
        return 0.0
    refs = [_counts(r, n) for r in references]

    def reference_count(order: int, gram: tuple[str, ...]) -> int:
        return max(r[order - 1][gram] for r in refs)

    closest = _closest_length(len(hypothesis), [len(r) for r in references])
    return _bleu(_counts(hypothesis, n), len(hypothesis), reference_count, closest)


def self_bleu(texts: Sequence[str], n: int = 4) -> float:
    """Mean BLEU-n of each text against all the other texts as references; O(total n-grams)
    by keeping, per n-gram, its two largest counts and which text holds the largest."""
    tokens = [words(t) for t in texts]
    if len(tokens) < 2:
        return 0.0
    counts = [_counts(t, n) for t in tokens]
    top: list[dict[tuple[str, ...], tuple[int, int, int]]] = [{} for _ in range(n)]
    for owner, per_order in enumerate(counts):
        for order, grams in enumerate(per_order):
            for g, c in grams.items():
                best, who, second = top[order].get(g, (0, -1, 0))
                if c > best:
                    top[order][g] = (c, owner, best)
                elif c > second:
                    top[order][g] = (best, who, c)
    lengths = [len(t) for t in tokens]
    scores = []
    for i, hyp in enumerate(tokens):
        if not hyp:
            scores.append(0.0)
            continue

        def reference_count(order: int, gram: tuple[str, ...], i: int = i) -> int:
            best, who, second = top[order - 1].get(gram, (0, -1, 0))
            return second if who == i else best

        closest = _closest_length(len(hyp), lengths[:i] + lengths[i + 1 :])
        scores.append(_bleu(counts[i], len(hyp), reference_count, closest))
    return sum(scores) / len(scores)


def similarity_to_real(real: np.ndarray, synthetic: np.ndarray, k: int = 5) -> float:
    """Mean over real texts of the mean cosine of their k most similar synthetic texts."""
    if len(real) == 0 or len(synthetic) == 0:
        return 0.0
    _, cosines = top_k(real, synthetic, k)
    return float(cosines.mean(axis=1).mean())
