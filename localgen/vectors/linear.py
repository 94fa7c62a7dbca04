"""A linear head over sentence vectors: multinomial logistic regression.

The objective is scikit-learn's `LogisticRegression(C=c, class_weight="balanced")`: the
sum of per-row cross-entropies, each weighted n / (k * rows of its label) so that a rare
label counts as much as a common one, plus ||W||^2 / (2c). It is solved with L-BFGS in
float64, so the same data gives the same weights. Curation uses it as a second opinion on
labels, the classifier as its head. This module does not save or load models;
`localgen.classify.classifier` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from localgen.errors import DataError


@dataclass(frozen=True)
class LinearHead:
    """Weights (k, d) and bias (k) over `labels`, in that order."""

    labels: tuple[str, ...]
    weight: np.ndarray
    bias: np.ndarray

    def proba(self, vectors: np.ndarray) -> np.ndarray:
        """Probabilities, shape (n, k), columns in the order of `labels`."""
        logits = vectors.astype(np.float64) @ self.weight.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, vectors: np.ndarray) -> list[str]:
        return [self.labels[i] for i in self.proba(vectors).argmax(axis=1)]


def balanced_weights(y: np.ndarray, k: int, factors: np.ndarray | None = None) -> np.ndarray:
    """Per-row weights n / (k * count of the row's label). With per-row `factors` the
    counts are weighted too, and each row's weight is multiplied by its factor: rows of
    factor 0 change nothing, as if they were not there."""
    f = np.ones(len(y)) if factors is None else np.asarray(factors, dtype=np.float64)
    counts = np.bincount(y, weights=f, minlength=k)
    per_label = f.sum() / (k * np.maximum(counts, 1e-12))
    return per_label[y] * f


def row_weights(
    y: np.ndarray, k: int, balanced: bool, factors: np.ndarray | None = None
) -> np.ndarray:
    """Each row's weight in the loss: balanced (`balanced_weights`) or the factors alone."""
    if balanced:
        return balanced_weights(y, k, factors)
    return np.ones(len(y)) if factors is None else np.asarray(factors, dtype=np.float64)


def fit_linear(
    vectors: np.ndarray,
    labels: Sequence[str],
    label_names: Sequence[str] | None = None,
    c: float = 1.0,
    balanced: bool = True,
    max_iter: int = 200,
    factors: np.ndarray | None = None,
) -> LinearHead:
    """Fit the head on `vectors` (n, d) with one label per row; `factors` weigh rows
    (`balanced_weights`)."""
    import torch

    names = tuple(label_names) if label_names is not None else tuple(sorted(set(labels)))
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise DataError(f"labels not among the classifier's labels: {', '.join(unknown[:5])}")
    if len(vectors) == 0:
        raise DataError("no rows to train on")
    if len(set(labels)) < 2:
        raise DataError("a classifier needs rows of at least two labels")
    y = np.array([index[label] for label in labels])
    k = len(names)
    sample = row_weights(y, k, balanced, factors)

    x_t = torch.from_numpy(np.asarray(vectors, dtype=np.float64))
    y_t = torch.from_numpy(y)
    s_t = torch.from_numpy(sample)
    w = torch.zeros((k, x_t.shape[1]), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [w, b], max_iter=max_iter, tolerance_grad=1e-7, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        losses = torch.nn.functional.cross_entropy(x_t @ w.T + b, y_t, reduction="none")
        loss = (losses * s_t).sum() + (w * w).sum() / (2 * c)
        loss.backward()
        return loss

    optimizer.step(closure)
    return LinearHead(names, w.detach().numpy().copy(), b.detach().numpy().copy())


def stratified_folds(labels: Sequence[str], folds: int, seed: int = 0) -> list[np.ndarray]:
    """Row indices of each fold; every label is spread over the folds round-robin."""
    rng = np.random.default_rng(seed)
    out: list[list[int]] = [[] for _ in range(folds)]
    position = 0
    for name in sorted(set(labels)):
        rows = [i for i, label in enumerate(labels) if label == name]
        for i in rng.permutation(rows):
            out[position % folds].append(int(i))
            position += 1
    return [np.array(sorted(f), dtype=np.int64) for f in out if f]


def cross_val_accuracy(
    vectors: np.ndarray, labels: Sequence[str], folds: int = 5, seed: int = 0
) -> float:
    """Accuracy of `fit_linear` on held-out folds of the data, over all rows."""
    labels = list(labels)
    correct = evaluated = 0
    for held in stratified_folds(labels, folds, seed):
        train = np.setdiff1d(np.arange(len(labels)), held)
        train_labels = [labels[i] for i in train]
        if len(set(train_labels)) < 2:
            continue
        head = fit_linear(vectors[train], train_labels, sorted(set(labels)))
        predicted = head.predict(vectors[held])
        correct += sum(p == labels[i] for p, i in zip(predicted, held, strict=True))
        evaluated += len(held)
    return correct / evaluated if evaluated else 0.0
