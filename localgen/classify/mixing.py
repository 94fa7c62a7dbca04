"""How much a synthetic row counts next to a real one: the synthetic weight.

Every synthetic row's loss is multiplied by a factor w (the class balance is computed on
the weighted counts, so w = 0 trains exactly the real-only classifier). `auto` chooses w
from `WEIGHTS` by cross-validation on the real training rows only: each real row is held
out once (stratified folds), the head is fitted on the other real rows plus every
synthetic row at factor w, and w is scored by the macro-F1 of the pooled held-out
predictions over `REPEATS` shuffles of the folds (ties: the lower log-loss, then the
smaller w). Since the choice includes 0, mixing in synthetic rows is only kept where the
real rows say it helps.

The synthetic rows were written from these same real rows (few-shot examples): a row
written from a held-out real row is a near-copy of it, and would make synthetic rows look
better than they are. So a fold leaves out, with its real rows, every synthetic row whose
prompt showed one of them (the row's positive_ids), and weighs the others up so that the
synthetic rows weigh as much in total as in the final fit. The model folder records the
choice and every fold's score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from localgen.classify.evaluation import score
from localgen.vectors.linear import fit_linear, stratified_folds

WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0)  # the factors `auto` chooses from
FOLDS = 5
REPEATS = 3  # shuffles of the folds: the held-out predictions of all are pooled


def factors(sources: Sequence[str], weight: float) -> np.ndarray:
    """Per-row factors: 1 for real rows, `weight` for synthetic ones."""
    return np.array([weight if s == "synthetic" else 1.0 for s in sources], dtype=np.float64)


def choose_weight(
    vectors: np.ndarray,
    labels: Sequence[str],
    sources: Sequence[str],
    label_names: Sequence[str],
    ids: Sequence[Sequence[str]] = (),
    c: float = 1.0,
    balanced: bool = True,
    seed: int = 0,
    weights: Sequence[float] = WEIGHTS,
) -> dict[str, Any]:
    """The factor cross-validation on the real rows prefers, with every score. `ids`: a
    real row's own id, and the real ids a synthetic row was written from (`TrainingSet.ids`)."""
    ids = list(ids) or [()] * len(labels)
    real = np.array([i for i, s in enumerate(sources) if s == "real"])
    synthetic = np.array([i for i, s in enumerate(sources) if s == "synthetic"], dtype=np.int64)
    real_labels = [labels[i] for i in real]
    folds = []
    for repeat in range(REPEATS):
        for fold in stratified_folds(real_labels, FOLDS, seed + repeat):
            held = real[fold]
            held_ids = {i for row in held for i in ids[row]}
            own = [j for j in synthetic if not held_ids.intersection(ids[j])]
            folds.append((held, np.array(own, dtype=np.int64)))
    index = {name: j for j, name in enumerate(label_names)}
    table = []
    for weight in weights:
        predicted: list[str] = []
        truth: list[str] = []
        losses: list[float] = []
        per_fold = []
        for held, own in folds:
            train = np.concatenate([np.setdiff1d(real, held), own])
            train_labels = [labels[i] for i in train]
            scale = len(synthetic) / len(own) if len(own) else 0.0  # the same total weight
            f = factors([sources[i] for i in train], weight * scale)
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
        "method": f"{FOLDS}-fold cross-validation, {REPEATS} times, on {len(real)} real rows; "
        "each fold without the synthetic rows written from its held-out rows",
        "synthetic_rows_per_fold": round(float(np.mean([len(o) for _, o in folds])), 1),
        "scores": table,
    }
