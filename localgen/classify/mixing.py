"""How much a synthetic row counts next to a real one: the synthetic weight.

Every synthetic row's loss is multiplied by a factor w (the class balance is computed on
the weighted counts, so w = 0 trains exactly the real-only classifier). `auto` chooses w
from `WEIGHTS` by cross-validation on the real training rows only: each real row is held
out once (stratified folds), the head is fitted on the other real rows plus every
synthetic row at factor w, and w is scored by the macro-F1 of the pooled held-out
predictions over `REPEATS` shuffles of the folds (ties: the lower log-loss, then the
smaller w). A w above 0 is only eligible where it beats w = 0 in `GATE` of bootstrap
resamples of the real rows: on 16 real rows one changed prediction moves macro-F1 by
several points, and a choice on noise is a loss on test data. So mixing in synthetic rows
is kept only where the real rows say, with some confidence, that it helps.

The synthetic rows were written from these same real rows (few-shot examples): a row
written from a held-out real row is a near-copy of it, and would make synthetic rows look
better than they are. So a fold leaves out, with its real rows, every synthetic row whose
prompt showed one of them (the row's positive_ids), and weighs the others up so that the
synthetic rows weigh as much in total as in the final fit. The model folder records the
choice and every fold's score, and for each weight the share of resamples in which its
class-balanced per-row log-loss is lower than at 0 (`lower_loss_share`): a finer signal
than macro-F1 that a benchmark found to let harmful weights through (docs/measurements.md,
"How auto should choose"), so it is recorded, not used.

Where a label has fewer real rows than the cross-validation has folds, it cannot hold
that label out in every fold and so cannot show a gain on it: the rare label that
`generate --balance` fills up. Worse, a fold that holds out one of its real rows also
leaves out the rows written from it, so the cross-validation sees what the rows cost the
other labels and not what they give the rare one. There `auto` turns the burden of proof
(`synthetic_gate`, `not_refuted`): the largest weight that 0 does not beat in `GATE` of
the resamples. Measured on three datasets with a rare label of 2 real rows
(docs/measurements.md, "Rewrites of the real rows, and the rare label"), `macro_f1` chose
0 for rows that lifted the rare label's F1 from 0.26 to 0.74 at weight 1, and `not_worse`
(the highest macro-F1 of the weights 0 does not beat) still chose 0 for some of them.

Labelled documents (`localgen label`) are always weighed by `not_worse`. They are the
user's own texts, chosen where the model and the real-row classifier agree, so the
burden of proof is on leaving them out: measured on three datasets with two models
(docs/measurements.md, "Labelling documents"), the documents at weight 1 beat real only
in all six cells, and the `macro_f1` gate chose 0 in one of them, giving up +0.080.

`fit` weighs each synthetic row on its own: by the probability that a classifier fitted
on the real rows alone gives the row's label (`label_fit`). A row that reads like the real
rows of its label counts almost fully; one that reads like another label's, or like none,
counts little, without a threshold that drops it. One factor for all rows of a run cannot
tell these apart, and the cross-validation that chooses it on 16-48 real rows mostly
chooses 0 (docs/measurements.md, "A weight per generated row").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from localgen.config import GATE_RESAMPLES
from localgen.vectors.linear import fit_linear, stratified_folds

WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0)  # the factors `auto` chooses from
LOWEST = 5  # the lowest-weighted rows a model records under `fit`
FOLDS = 5
REPEATS = 3  # shuffles of the folds: the held-out predictions of all are pooled
GATE = 0.9  # a weight above 0 must beat 0 in this share of them


@dataclass(frozen=True)
class Mix:
    """The weight of one source of rows next to the real ones: the setting, the factor
    training uses, and where `auto` chose it, how (`scores`: one entry per weight tried)."""

    setting: str | float  # "auto" or the factor given
    chosen: float
    method: str | None = None
    reason: str | None = None  # why auto chose without cross-validation
    synthetic_rows_per_fold: float | None = None
    scores: list[dict[str, Any]] = field(default_factory=list)
    # auto: macro-F1 on the real rows of a head fitted on the synthetic rows alone, each
    # fold without the rows written from its held-out real rows (None: too few labels)
    synthetic_alone: float | None = None
    # `fit`: each row's own factor, in the order of the source's rows (`chosen` is their mean)
    per_row: tuple[float, ...] | None = None
    summary: dict[str, Any] | None = None  # `fit`: the factors per label, the lowest rows

    def as_dict(self) -> dict[str, Any]:
        """As model.json records it (the per-row factors go to their own file)."""
        out: dict[str, Any] = {"setting": self.setting, "chosen": self.chosen}
        for key in ("method", "reason", "synthetic_rows_per_fold", "synthetic_alone"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        out |= self.summary or {}
        return out | ({"scores": self.scores} if self.setting == "auto" and self.scores else {})


def _macro_f1(truth: np.ndarray, guess: np.ndarray, k: int) -> float:
    """Macro-F1 over the labels that occur in `truth` or `guess` (as `score` counts)."""
    confusion = np.bincount(truth * k + guess, minlength=k * k).reshape(k, k)
    tp = np.diag(confusion).astype(np.float64)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    present = (support + predicted) > 0
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros(k), where=present)
    return float(f1[present].mean())


def _better_share(
    truth: np.ndarray, guess: np.ndarray, base: np.ndarray, draws: list[np.ndarray], k: int
) -> tuple[float, float]:
    """Shares of resamples of the real rows (each with all its repeats) in which `guess`
    has the higher, and the lower, pooled macro-F1 than `base`."""
    wins = losses = 0
    for rows in draws:
        t = np.tile(truth[rows], REPEATS)
        ours, theirs = (
            _macro_f1(t, guess[:, rows].ravel(), k),
            _macro_f1(t, base[:, rows].ravel(), k),
        )
        wins, losses = wins + (ours > theirs), losses + (ours < theirs)
    return round(wins / len(draws), 3), round(losses / len(draws), 3)


def _lower_loss_share(
    loss: np.ndarray, base: np.ndarray, row_weight: np.ndarray, draws: list[np.ndarray]
) -> float:
    """Share of resamples of the real rows in which `loss` (REPEATS, rows) has the lower
    weighted mean than `base`: the paired per-row log-loss."""
    gain = (base - loss).mean(axis=0) * row_weight
    wins = sum(float(gain[rows].sum()) > 0 for rows in draws)
    return round(wins / len(draws), 3)


# The rules bench/real_data.py --stage gate compares on the same folds; `auto` uses the
# first for synthetic rows (docs/measurements.md, "How auto should choose") and the last
# for labelled documents.
GATES = ("macro_f1", "log_loss", "log_loss_gate", "not_worse", "not_refuted")


def pick(table: list[dict[str, Any]], gate: str = "macro_f1") -> dict[str, Any]:
    """The entry of `table` a rule chooses. macro_f1: a weight above 0 must beat 0 on
    pooled macro-F1 in GATE of the resamples; the highest macro-F1 of those. log_loss: it
    must have the lower log-loss in GATE of them; the lowest log-loss. log_loss_gate: the
    log-loss gate, then the highest macro-F1. not_worse: any weight but those 0 beats in
    GATE of the resamples; the highest macro-F1 (ties: the lower log-loss). not_refuted:
    the largest of those."""
    if gate in ("not_worse", "not_refuted"):
        kept = [e for e in table if e["weight"] == 0.0 or e["worse_than_0_share"] < GATE]
        if gate == "not_refuted":
            return max(kept, key=lambda e: e["weight"])
        return max(kept, key=lambda e: (e["macro_f1"], -e["log_loss"], e["weight"]))
    share = "better_than_0_share" if gate == "macro_f1" else "lower_loss_share"
    trusted = [e for e in table if e["weight"] == 0.0 or e[share] >= GATE]
    if gate == "log_loss":
        return min(trusted, key=lambda e: (e["log_loss"], e["weight"]))
    return max(trusted, key=lambda e: (e["macro_f1"], -e["log_loss"], -e["weight"]))


def synthetic_gate(real_labels: Sequence[str], label_names: Sequence[str]) -> str:
    """auto's gate for synthetic rows: `not_refuted` where a label has fewer real rows than
    FOLDS (the cross-validation cannot show a gain on it), else `macro_f1`."""
    counts = Counter(real_labels)
    return "not_refuted" if min(counts[name] for name in label_names) < FOLDS else "macro_f1"


def label_fit(
    real_vectors: np.ndarray,
    real_labels: Sequence[str],
    vectors: np.ndarray,
    labels: Sequence[str],
    label_names: Sequence[str],
    c: float = 1.0,
    balanced: bool = True,
) -> np.ndarray:
    """For each row of `vectors`, the probability that a head fitted on the real rows
    alone gives its label in `labels`: the row's factor under `fit`."""
    head = fit_linear(real_vectors, real_labels, label_names, c, balanced)
    proba = head.proba(vectors)
    columns = [list(label_names).index(label) for label in labels]
    return proba[np.arange(len(columns)), columns]


def fit_mix(
    weights: np.ndarray, labels: Sequence[str], texts: Sequence[str], real_rows: int
) -> Mix:
    """The `fit` choice for rows with these factors: the mean, per label the mean, lowest
    and highest factor, and the LOWEST lowest-weighted rows."""
    per_label: dict[str, dict[str, float]] = {}
    for name in sorted(set(labels)):
        own = weights[[i for i, label in enumerate(labels) if label == name]]
        per_label[name] = {
            "rows": len(own),
            "mean": round(float(own.mean()), 3),
            "min": round(float(own.min()), 3),
            "max": round(float(own.max()), 3),
        }
    lowest = [
        {"text": texts[i], "label": labels[i], "weight": round(float(weights[i]), 3)}
        for i in np.argsort(weights, kind="stable")[:LOWEST]
    ]
    return Mix(
        "fit",
        round(float(weights.mean()), 3) if len(weights) else 0.0,
        method=f"each row: the probability of its label by a classifier on the {real_rows} "
        "real rows alone",
        per_row=tuple(float(w) for w in weights),
        summary={"per_label": per_label, "lowest": lowest},
    )


def factors(sources: Sequence[str], weight: float | dict[str, float]) -> np.ndarray:
    """Per-row factors: 1 for real rows; for the others `weight`, or their source's
    weight in it (a source it does not name: 0)."""
    if not isinstance(weight, dict):
        return np.array([1.0 if s == "real" else weight for s in sources], dtype=np.float64)
    return np.array([1.0 if s == "real" else weight.get(s, 0.0) for s in sources])


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
    gate: str = "macro_f1",
    row_factors: np.ndarray | None = None,
) -> Mix:
    """The factor cross-validation on the real rows prefers, with every score. `ids`: a
    real row's own id, and the real ids a synthetic row was written from (`TrainingSet.ids`).
    `gate`: the rule of `pick` that chooses. `row_factors`: each row's own factor, which
    the chosen one scales (1 for a real row); None: 1 for every row."""
    ids = list(ids) or [()] * len(labels)
    real = np.array([i for i, s in enumerate(sources) if s == "real"])
    synthetic = np.array([i for i, s in enumerate(sources) if s == "synthetic"], dtype=np.int64)
    real_labels = [labels[i] for i in real]
    folds: list[tuple[np.ndarray, np.ndarray]] = []
    for repeat in range(REPEATS):
        for fold in stratified_folds(real_labels, FOLDS, seed + repeat):
            held = real[fold]
            held_ids = {i for row in held for i in ids[row]}
            offspring_free = [j for j in synthetic if not held_ids.intersection(ids[j])]
            folds.append((held, np.array(offspring_free, dtype=np.int64)))
    index = {name: j for j, name in enumerate(label_names)}
    position = {int(row): n for n, row in enumerate(real)}
    truth = np.array([index[lab] for lab in real_labels])
    k = len(label_names)
    table: list[dict[str, Any]] = []
    guesses: dict[float, np.ndarray] = {}  # weight -> (REPEATS, real rows) label indices
    losses: dict[float, np.ndarray] = {}  # weight -> (REPEATS, real rows) log-loss
    counts = np.bincount(truth, minlength=k)
    row_weight = 1.0 / counts[truth] if balanced else np.ones(len(real))
    row_weight = row_weight / row_weight.sum()
    for weight in weights:
        guess = np.full((REPEATS, len(real)), -1)
        loss = np.zeros((REPEATS, len(real)))
        per_fold: list[float] = []
        for n, (held, own) in enumerate(folds):
            train = np.concatenate([np.setdiff1d(real, held), own])
            train_labels = [labels[i] for i in train]
            scale = len(synthetic) / len(own) if len(own) else 0.0  # the same total weight
            f = factors([sources[i] for i in train], weight * scale)
            if row_factors is not None:
                f = f * row_factors[train]
            if len({lab for lab, w in zip(train_labels, f, strict=True) if w > 0}) < 2:
                continue
            head = fit_linear(vectors[train], train_labels, label_names, c, balanced, factors=f)
            proba = head.proba(vectors[held])
            at = [position[int(i)] for i in held]
            guess[n // FOLDS, at] = proba.argmax(axis=1)
            loss[n // FOLDS, at] = -np.log(proba[np.arange(len(held)), truth[at]] + 1e-12)
            per_fold.append(round(_macro_f1(truth[at], proba.argmax(axis=1), k), 4))
        if (guess < 0).any():
            continue
        guesses[weight], losses[weight] = guess, loss
        table.append(
            {
                "weight": weight,
                "macro_f1": round(_macro_f1(np.tile(truth, REPEATS), guess.ravel(), k), 4),
                "log_loss": round(float(loss.mean(axis=0) @ row_weight), 4),
                "fold_macro_f1": per_fold,
            }
        )
    if 0.0 not in guesses:
        return Mix("auto", 1.0, reason="too few real rows to fold")
    alone = _alone(vectors, labels, label_names, folds, position, truth, c, balanced, row_factors)
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(real), len(real)) for _ in range(GATE_RESAMPLES)]
    for entry in table:
        w = entry["weight"]
        better, worse = _better_share(truth, guesses[w], guesses[0.0], draws, k)
        entry["better_than_0_share"], entry["worse_than_0_share"] = better, worse
        entry["lower_loss_share"] = _lower_loss_share(losses[w], losses[0.0], row_weight, draws)
    best = pick(table, gate)
    of = f"{GATE:.0%} of {GATE_RESAMPLES} resamples of the real rows"
    rules = {
        "macro_f1": f"a weight above 0 only where it beats 0 in {of}",
        "not_worse": f"any weight but one 0 beats in {of}",
        "not_refuted": f"the largest weight 0 does not beat in {of}",
    }
    rule = rules.get(gate, f"the {gate} rule over {GATE_RESAMPLES} resamples of the real rows")
    return Mix(
        "auto",
        best["weight"],
        method=f"{FOLDS}-fold cross-validation, {REPEATS} times, on {len(real)} real rows; "
        f"each fold without the synthetic rows written from its held-out rows; {rule}",
        synthetic_rows_per_fold=round(float(np.mean([len(o) for _, o in folds])), 1),
        scores=table,
        synthetic_alone=alone,
    )


def _alone(
    vectors: np.ndarray,
    labels: Sequence[str],
    label_names: Sequence[str],
    folds: list[tuple[np.ndarray, np.ndarray]],
    position: dict[int, int],
    truth: np.ndarray,
    c: float,
    balanced: bool,
    row_factors: np.ndarray | None,
) -> float | None:
    """Pooled macro-F1 on the held-out real rows of heads fitted on each fold's synthetic
    rows alone (train on synthetic, test on real: every real row is evidence); None where
    a fold's synthetic rows hold fewer than two labels."""
    guess = np.full((REPEATS, len(truth)), -1)
    for n, (held, own) in enumerate(folds):
        own_labels = [labels[i] for i in own]
        if len(set(own_labels)) < 2:
            return None
        f = None if row_factors is None else row_factors[own]
        head = fit_linear(vectors[own], own_labels, label_names, c, balanced, factors=f)
        guess[n // FOLDS, [position[int(i)] for i in held]] = head.proba(vectors[held]).argmax(1)
    k = len(label_names)
    return round(_macro_f1(np.tile(truth, REPEATS), guess.ravel(), k), 4)
