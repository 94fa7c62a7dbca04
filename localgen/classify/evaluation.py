"""Classification scores on real test data, with bootstrap confidence intervals.

Scores follow scikit-learn's definitions: macro-F1 is the unweighted mean of the
per-label F1 over the labels that occur in the true or the predicted labels, and a
precision or recall with a zero denominator counts as 0. Confidence intervals are
percentile intervals over bootstrap resamples of the test rows (fixed seed, so the same
predictions give the same interval); a paired bootstrap, which resamples the same rows
for two classifiers, gives the interval of their difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from localgen.config import LEVEL, RESAMPLES
from localgen.errors import DataError

CHUNK = 100  # resamples scored at once: CHUNK x n indices in memory


def _codes(
    y_true: Sequence[str], y_pred: Sequence[str]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    if not len(y_true):
        raise DataError("no test rows to score")
    labels = sorted(set(y_true) | set(y_pred))
    index = {name: i for i, name in enumerate(labels)}
    return (
        labels,
        np.array([index[y] for y in y_true], dtype=np.int64),
        np.array([index[y] for y in y_pred], dtype=np.int64),
    )


def _confusions(t: np.ndarray, p: np.ndarray, k: int, rows: np.ndarray) -> np.ndarray:
    """Confusion matrices (r, k, k) of the resamples `rows` (r, n): [true, predicted]."""
    cells = t[rows] * k + p[rows]
    offsets = np.arange(len(rows))[:, None] * k * k
    flat = np.bincount((cells + offsets).ravel(), minlength=len(rows) * k * k)
    return flat.reshape(len(rows), k, k)


def _from_confusions(c: np.ndarray) -> dict[str, np.ndarray]:
    """Scores of a stack of confusion matrices (..., k, k)."""
    tp = np.diagonal(c, axis1=-2, axis2=-1).astype(np.float64)
    support = c.sum(axis=-1)  # rows: true label
    predicted = c.sum(axis=-2)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    # Only labels present in the (resampled) true or predicted labels count in the mean.
    present = (support + predicted) > 0
    macro = (f1 * present).sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)
    accuracy = tp.sum(axis=-1) / np.maximum(c.sum(axis=(-2, -1)), 1)
    return {
        "accuracy": accuracy,
        "macro_f1": macro,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def _interval(values: np.ndarray, level: float) -> list[float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail], axis=0)
    return [round(float(low), 4), round(float(high), 4)]


def _resamples(n: int, resamples: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, resamples, CHUNK):
        out.append(rng.integers(0, n, size=(min(CHUNK, resamples - start), n)))
    return out


def score(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-label precision/recall/F1 and the confusion matrix, each
    score with a `level` bootstrap interval (`resamples` 0: no intervals)."""
    labels, t, p = _codes(y_true, y_pred)
    k = len(labels)
    confusion = _confusions(t, p, k, np.arange(len(t))[None, :])[0]
    point = _from_confusions(confusion)
    boot: dict[str, list[np.ndarray]] = {name: [] for name in point}
    for rows in _resamples(len(t), resamples, seed):
        for name, values in _from_confusions(_confusions(t, p, k, rows)).items():
            boot[name].append(values)
    stacked = {name: np.concatenate(v) for name, v in boot.items() if v}

    def entry(name: str, column: int | None = None) -> dict[str, Any]:
        value = point[name] if column is None else point[name][column]
        out: dict[str, Any] = {"value": round(float(value), 4)}
        if stacked:
            sample = stacked[name] if column is None else stacked[name][:, column]
            out["ci"] = _interval(sample, level)
        return out

    return {
        "rows": len(t),
        "labels": labels,
        "accuracy": entry("accuracy"),
        "macro_f1": entry("macro_f1"),
        "per_label": {
            name: {
                "precision": entry("precision", i),
                "recall": entry("recall", i),
                "f1": entry("f1", i),
                "support": int(confusion[i].sum()),
            }
            for i, name in enumerate(labels)
        },
        "confusion": {"labels": labels, "matrix": confusion.tolist()},
        "bootstrap": {"resamples": resamples, "level": level, "seed": seed},
    }


def paired_difference(
    y_true: Sequence[str],
    pred_a: Sequence[str],
    pred_b: Sequence[str],
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, Any]:
    """Macro-F1 of b minus macro-F1 of a on the same test rows, with a paired bootstrap
    interval (each resample scores both on the same rows) and the share of resamples in
    which b is better."""
    if len(pred_a) != len(pred_b):
        raise ValueError(f"{len(pred_a)} predictions against {len(pred_b)}")
    # One label index for both: code (true, a) and (true, b) over the union of labels.
    labels, t, both = _codes(list(y_true) * 2, list(pred_a) + list(pred_b))
    t, a, b = t[: len(pred_a)], both[: len(pred_a)], both[len(pred_a) :]
    k = len(labels)
    whole = np.arange(len(t))[None, :]
    diff = float(
        _from_confusions(_confusions(t, b, k, whole))["macro_f1"][0]
        - _from_confusions(_confusions(t, a, k, whole))["macro_f1"][0]
    )
    samples = []
    for rows in _resamples(len(t), resamples, seed):
        fa = _from_confusions(_confusions(t, a, k, rows))["macro_f1"]
        fb = _from_confusions(_confusions(t, b, k, rows))["macro_f1"]
        samples.append(fb - fa)
    out: dict[str, Any] = {"macro_f1_difference": round(diff, 4)}
    if samples:
        values = np.concatenate(samples)
        out["ci"] = _interval(values, level)
        out["b_better_share"] = round(float((values > 0).mean()), 4)
    return out


def _with_ci(entry: dict[str, Any]) -> str:
    if "ci" not in entry:
        return f"{entry['value']:.3f}"
    low, high = entry["ci"]
    return f"{entry['value']:.3f} [{low:.3f}, {high:.3f}]"


def render(result: dict[str, Any]) -> str:
    """A score as text: headline numbers, a per-label table and the confusion matrix."""
    level = int(result["bootstrap"]["level"] * 100)
    lines = [
        f"{result['rows']} test rows; {level}% bootstrap intervals in brackets",
        f"accuracy  {_with_ci(result['accuracy'])}",
        f"macro-F1  {_with_ci(result['macro_f1'])}",
        "",
    ]
    names = result["labels"]
    width = max(8, *(len(n) for n in names))
    lines.append(f"{'label':<{width}}  {'precision':>9}  {'recall':>9}  {'F1':>24}  {'support':>7}")
    for name in names:
        row = result["per_label"][name]
        lines.append(
            f"{name:<{width}}  {row['precision']['value']:>9.3f}  {row['recall']['value']:>9.3f}"
            f"  {_with_ci(row['f1']):>24}  {row['support']:>7}"
        )
    lines += ["", "confusion (rows: true label, columns: predicted)"]
    cell = max(5, *(len(str(v)) for r in result["confusion"]["matrix"] for v in r))
    short = [n[:cell] for n in names]
    lines.append(f"{'':<{width}}  " + "  ".join(f"{s:>{cell}}" for s in short))
    for name, counts in zip(names, result["confusion"]["matrix"], strict=True):
        lines.append(f"{name:<{width}}  " + "  ".join(f"{v:>{cell}}" for v in counts))
    return "\n".join(lines)
