"""Diversity metrics against hand-computed cases, and the real sentence encoder."""

import numpy as np
import pytest

from localgen.report import metrics
from localgen.report.metrics import chamfer, distinct_n, remote_clique
from localgen.vectors import neighbours


def test_distinct_n_by_hand() -> None:
    texts = ["A b a.", "b C"]  # words: a b a | b c
    assert distinct_n(texts, 1) == pytest.approx(3 / 5)  # a, b, c out of 5
    assert distinct_n(texts, 2) == pytest.approx(3 / 3)  # (a b) (b a) (b c)
    assert distinct_n(["a a a"], 2) == pytest.approx(1 / 2)
    assert distinct_n(["one"], 2) == 0.0  # no bigram at all


def test_embedding_diversity_by_hand() -> None:
    e1, e2 = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    vectors = np.array([e1, e2, e1])
    # distances: d(1,2) = 1, d(1,3) = 0, d(2,3) = 1
    assert remote_clique(vectors) == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert chamfer(vectors) == pytest.approx((0.0 + 1.0 + 0.0) / 3)
    assert remote_clique(vectors[:1]) == chamfer(vectors[:1]) == 0.0


def test_blocked_computation_equals_the_full_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(37, 8))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    d = 1.0 - v @ v.T
    np.fill_diagonal(d, np.inf)
    expected_chamfer = d.min(axis=1).mean()
    np.fill_diagonal(d, 0.0)
    expected_clique = (d.sum(axis=1) / 36).mean()
    monkeypatch.setattr(neighbours, "BLOCK", 5)
    assert chamfer(v) == pytest.approx(expected_chamfer)
    assert remote_clique(v) == pytest.approx(expected_clique)


def test_real_encoder_puts_paraphrases_close() -> None:
    from localgen.vectors.encoder import default_encoder

    v = default_encoder().encode(
        ["I was charged twice this month", "You billed me two times in May", "The app crashes"]
    )
    assert v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_batches_cut_longest_first_return_vectors_in_the_callers_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from localgen.vectors import encoder

    texts = ["short", "a much longer text about a refund that never came", "mid length text", ""]
    monkeypatch.setattr(encoder, "BATCH", 2)  # two batches, each of texts far apart in order
    together = encoder.default_encoder().encode(texts)
    alone = np.concatenate([encoder.default_encoder().encode([t]) for t in texts])
    assert np.allclose(together, alone, atol=1e-5)
    assert encoder.default_encoder().encode([]).shape == (0, 384)


def test_bleu_by_hand() -> None:
    hyp, ref = ["a", "b", "c", "d", "e"], ["a", "b", "c", "x", "y"]
    # precisions 3/5, 2/4, 1/3 and 0/2 (smoothed to 0.1/2); same length: no penalty
    assert metrics.bleu(hyp, [ref]) == pytest.approx((0.6 * 0.5 * (1 / 3) * 0.05) ** 0.25)
    # a short hypothesis: 1, 1, then 0.1/1 twice, times the brevity penalty exp(1 - 4/2)
    short = metrics.bleu(["a", "b"], [["a", "b", "c", "d"]])
    assert short == pytest.approx(0.01**0.25 * np.exp(-1))
    # the clipped count takes the best reference for each n-gram
    assert metrics.bleu(["a", "a"], [["a", "b"], ["a", "a"]], n=1) == pytest.approx(1.0)
    assert metrics.bleu(["a", "a"], [["a", "b"]], n=1) == pytest.approx(0.5)


def test_self_bleu_equals_bleu_against_all_others() -> None:
    texts = ["a b c d", "a b c d", "e f g h", "a b e f g", "h"]
    tokens = [metrics.words(t) for t in texts]
    expected = np.mean(
        [metrics.bleu(tokens[i], tokens[:i] + tokens[i + 1 :]) for i in range(len(texts))]
    )
    assert metrics.self_bleu(texts) == pytest.approx(expected)
    assert metrics.self_bleu(["a b c d", "a b c d"]) == pytest.approx(1.0)
    assert metrics.self_bleu(["only one"]) == 0.0


def test_similarity_to_real_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    real = np.array([[1.0, 0.0], [0.0, 1.0]])
    synthetic = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    # real 1: top-2 cosines 1.0 and 0.6; real 2: 1.0 and 0.8
    assert metrics.similarity_to_real(real, synthetic, k=2) == pytest.approx((0.8 + 0.9) / 2)
    assert metrics.similarity_to_real(real, synthetic, k=10) == pytest.approx(
        ((1 + 0 + 0.6) / 3 + (0 + 1 + 0.8) / 3) / 2
    )
    monkeypatch.setattr(neighbours, "BLOCK", 1)
    assert metrics.similarity_to_real(real, synthetic, k=2) == pytest.approx(0.85)
