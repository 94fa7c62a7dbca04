"""How much a synthetic row counts next to a real one: the synthetic weight.

Every synthetic row's loss is multiplied by a factor w (the class balance is computed on
the weighted counts, so w = 0 trains exactly the real-only classifier). `auto` chooses w
from `WEIGHTS` by cross-validation on the real training rows only: each real row is held
out once (stratified folds), the head is fitted on the other real rows plus every
synthetic row at factor w, and w is scored by the macro-F1 of the pooled held-out
predictions (ties: the lower log-loss, then the smaller w). Since the choice includes 0,
mixing in synthetic rows is only kept where the real rows say it helps.

The synthetic rows were written from these same real rows (few-shot examples), so the
held-out rows are not unseen by the generator: the estimate leans towards synthetic rows.
The model folder records the choice and every fold's score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from localgen.classify.evaluation import score
from localgen.vectors.linear import fit_linear, stratified_folds

WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0)  # the factors `auto` chooses from
FOLDS = 5


def factors(sources: Sequence[str], weight: float) -> np.ndarray:
    """Per-row factors: 1 for real rows, `weight` for synthetic ones."""
    return np.array([weight if s == "synthetic" else 1.0 for s in sources], dtype=np.float64)


def choose_weight(
    vectors: np.ndarray,
    labels: Sequence[str],
    sources: Sequence[str],
    label_names: Sequence[str],
    c: float = 1.0,
    balanced: bool = True,
    seed: int = 0,
    weights: Sequence[float] = WEIGHTS,
) -> dict[str, Any]:
    """The factor cross-validation on the real rows prefers, with every score."""
    real = np.array([i for i, s in enumerate(sources) if s == "real"])
    synthetic = np.array([i for i, s in enumerate(sources) if s == "synthetic"], dtype=np.int64)
    real_labels = [labels[i] for i in real]
    folds = [real[f] for f in stratified_folds(real_labels, FOLDS, seed)]
    index = {name: j for j, name in enumerate(label_names)}
    table = []
    for weight in weights:
        predicted: list[str] = []
        truth: list[str] = []
        losses: list[float] = []
        per_fold = []
        for held in folds:
            train = np.concatenate([np.setdiff1d(real, held), synthetic])
            train_labels = [labels[i] for i in train]
            f = factors([sources[i] for i in train], weight)
            if len({lab for lab, w in zip(train_labels, f, strict=True) if w > 0}) < 2:
                continue
            head = fit_linear(vectors[train], train_labels, label_names, c, balanced, factors=f)
            proba = head.proba(vectors[held])
            guess = [label_names[j] for j in proba.argmax(axis=1)]
            true = [labels[i] for i in held]
            rows = np.arange(len(held))
            losses += list(-np.log(proba[rows, [index[t] for t in true]] + 1e-12))
            per_fold.append(score(true, guess, resamples=0)["macro_f1"]["value"])
            predicted += guess
            truth += true
        if not truth:
            continue
        table.append(
            {
                "weight": weight,
                "macro_f1": score(truth, predicted, resamples=0)["macro_f1"]["value"],
                "log_loss": round(float(np.mean(losses)), 4),
                "fold_macro_f1": per_fold,
            }
        )
    if not table:
        return {"setting": "auto", "chosen": 1.0, "reason": "too few real rows to fold"}
    best = max(table, key=lambda e: (e["macro_f1"], -e["log_loss"], -e["weight"]))
    return {
        "setting": "auto",
        "chosen": best["weight"],
        "method": f"{FOLDS}-fold cross-validation on {len(real)} real rows, "
        f"{len(synthetic)} synthetic rows in every fold",
        "scores": table,
    }
