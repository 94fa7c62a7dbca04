"""Which labelled documents to train on: the model's label, the few-shot classifier's
view of it, and the most confident of those the two agree on, per label.

The classifier is the one `train` fits on the real rows alone (the built-in encoder, a
linear head). Where there are real rows, a document's `confidence` is the geometric mean
of the model's and the classifier's probability of the model's label, and a document
the classifier labels otherwise is left out: measured outside the project, the model's
own answers were right 66% of the time on a movie-review task, but where they agreed
with the 8-row classifier the most confident were all right. Without real rows the
model's probability alone, and each label keeps its UNCHECKED_PER_LABEL most confident.

With real rows every agreed document is kept unless `per_label` caps each label. A cap
was the default once (64 per label), and it chose the most typical documents of a larger
pool: with the 0.5B model's labels of 2,000 documents per dataset, keeping every agreed
one instead moved the gain over real only from -0.009 to +0.146 (SMS spam), +0.071 to
+0.074 (TREC-6) and +0.014 to +0.051 (BBC News); with the built-in model's labels from
+0.089 / +0.068 / +0.029 to +0.001 / +0.065 / +0.048 (docs/measurements.md, "Labelling
documents"). This module does not ask the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from localgen.data import LabeledData
from localgen.progress import Say, silent

MIN_CALIBRATION = 20  # documents with probabilities: fewer, and their mean is no prior
# The least a label's prior may be, so that a label the model almost never gives does
# not turn a stray trace of it into certainty. Not higher: on TREC-6 the built-in model
# gave one label 98% of its probability, the five others under 1% each on average, and a
# floor of 0.01 left 0.196 of its labels right where 1e-12 left 0.418.
PRIOR_FLOOR = 1e-4
MODEL_P = "p_model_"  # column prefix: the model's probability of each label
CLASSIFIER_P = "p_classifier_"  # ... and the classifier's
# Without real rows nothing checks the model's labels: each label keeps this many of its
# most confident documents.
UNCHECKED_PER_LABEL = 64


def classifier_probabilities(
    seed_data: LabeledData,
    ids: Sequence[str],
    texts: Sequence[str],
    labels: Sequence[str],
    cache: Path | None,
    say: Say = silent,
) -> np.ndarray:
    """The few-shot classifier's probability of every label (columns in `labels` order)
    for each text: a linear head on the built-in encoder's vectors of the real rows."""
    from localgen.vectors.encoder import cache_file, default_encoder, encode_cached
    from localgen.vectors.linear import fit_linear

    encoder = default_encoder()
    say(f"fitting the few-shot classifier on {seed_data.frame.height} real rows")
    real = encoder.encode(seed_data.frame["text"].to_list())
    head = fit_linear(real, seed_data.frame["label"].to_list(), tuple(labels))
    if cache is None:
        vectors = encoder.encode(list(texts))
    else:
        vectors = encode_cached(encoder, list(ids), list(texts), cache_file(cache, encoder), say)
    return head.proba(vectors)


def calibrate(frame: pl.DataFrame, labels: Sequence[str]) -> tuple[pl.DataFrame, dict[str, float]]:
    """The model's probabilities divided by their mean over the documents (its prior), and
    normalised again; `label` the most likely label after that, `answer` the one the model
    wrote. Small models favour one label whatever the text (the built-in model answered
    the first label of the support-ticket task for 40 of 40 tickets, at 0.79-0.86, while
    its probability of the right label rose and fell with the text): dividing by the prior
    over the same documents ("batch calibration", Zhou et al. 2023) reads that rise and
    fall. Documents without probabilities keep the model's answer; so do all where fewer
    than MIN_CALIBRATION have probabilities. The prior assumes the labels about equally
    common among the documents: where one is rare, calibration moves documents to it,
    and the classifier's agreement is what keeps the wrong ones out."""
    columns = [f"{MODEL_P}{n}" for n in labels]
    given = frame.filter(pl.col(columns[0]).is_not_null())
    if given.height < MIN_CALIBRATION:
        return frame.with_columns(pl.col("answer").alias("label")), {}
    raw = given.select(columns).to_numpy()
    prior = np.maximum(raw.mean(axis=0), PRIOR_FLOOR)
    every = frame.select(columns).to_numpy()
    scaled = every / prior
    scaled = scaled / scaled.sum(axis=1, keepdims=True)
    answers = frame["answer"].to_list()
    best: list[str | None] = []
    for row, answer in zip(scaled, answers, strict=True):
        if np.isnan(row).any():
            best.append(None)
            continue
        top = np.flatnonzero(row == row.max())  # a tie keeps the model's own answer
        best.append(answer if answer in [labels[i] for i in top] else labels[int(top[0])])
    frame = frame.with_columns(
        *(pl.Series(c, scaled[:, j].round(6)).fill_nan(None) for j, c in enumerate(columns)),
        pl.Series("calibrated", best, dtype=pl.Utf8),
    )
    frame = frame.with_columns(pl.coalesce("calibrated", "answer").alias("label")).drop(
        "calibrated"
    )
    return frame, {n: round(float(p), 6) for n, p in zip(labels, prior, strict=True)}


def calibrated_where_it_agrees(
    frame: pl.DataFrame, labels: Sequence[str]
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """`frame` with `label`: calibrated (`calibrate`), unless the few-shot classifier agrees
    with the model's own answers on more documents than with the calibrated labels; then
    the answers, with the model's own probabilities. Calibration assumes the labels about
    equally common: on SMS spam (13% spam) it cost the 0.5B model's labels 12 points
    (0.880 right before, 0.758 after), on TREC-6 it gained 24 (0.308 to 0.550), and on
    both, and with the built-in model, the agreement with the classifier rose where the
    accuracy did (docs/measurements.md, "Labelling documents"). Without a classifier: the
    calibrated labels."""
    calibrated, prior = calibrate(frame, labels)
    info: dict[str, Any] = {"prior": prior, "used": bool(prior)}
    if not prior or f"{CLASSIFIER_P}{labels[0]}" not in frame.columns:
        return calibrated, info
    proba = frame.select(f"{CLASSIFIER_P}{n}" for n in labels).to_numpy()
    classifier = pl.Series([labels[i] for i in proba.argmax(axis=1)], dtype=pl.Utf8)
    agreement = {
        "answers": _share(frame["answer"] == classifier),
        "calibrated": _share(calibrated["label"] == classifier),
    }
    info |= {"agreement_with_classifier": agreement}
    if agreement["answers"] > agreement["calibrated"]:
        info["used"] = False
        return frame.with_columns(pl.col("answer").alias("label")), info
    return calibrated, info


def _share(agrees: pl.Series) -> float:
    """The share of documents where it is true (null counts as false)."""
    return round(int(agrees.fill_null(False).sum()) / max(len(agrees), 1), 4)


def cap(per_label: int | None, checked: bool) -> int | None:
    """How many documents each label keeps at most: `per_label` where given; else none
    (every agreed document) where the few-shot classifier `checked` the labels, and
    UNCHECKED_PER_LABEL where it did not."""
    if per_label is not None:
        return per_label
    return None if checked else UNCHECKED_PER_LABEL


def choose(frame: pl.DataFrame, labels: Sequence[str], per_label: int | None) -> pl.DataFrame:
    """`frame` (one row per document: `label`, the model's answer or null, and its
    MODEL_P / CLASSIFIER_P columns) with `classifier_label`, `agree`, `confidence`, `rank`
    (among the label's candidates, most confident first) and `chosen` (the candidates
    within `cap`)."""
    has_classifier = f"{CLASSIFIER_P}{labels[0]}" in frame.columns
    model_p = _of_label(MODEL_P, labels)
    if has_classifier:
        classifier_p = _of_label(CLASSIFIER_P, labels)
        best = pl.concat_list([pl.col(f"{CLASSIFIER_P}{n}") for n in labels]).list.arg_max()
        classifier_label = best.replace_strict(list(range(len(labels))), list(labels))
        frame = frame.with_columns(classifier_label.alias("classifier_label"))
        agree = pl.col("label") == pl.col("classifier_label")
        confidence = (model_p.fill_null(_missing(frame, labels)) * classifier_p).sqrt()
    else:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias("classifier_label"))
        agree = pl.lit(None, dtype=pl.Boolean)
        confidence = model_p.fill_null(_missing(frame, labels))
    frame = frame.with_columns(
        agree.alias("agree"),
        pl.when(pl.col("label").is_not_null()).then(confidence).alias("confidence"),
    )
    candidate = pl.col("label").is_not_null() & pl.col("agree").fill_null(not has_classifier)
    ranked = (
        frame.with_row_index("_order")
        .with_columns(
            pl.when(candidate)
            .then(
                pl.col("confidence")
                .rank("ordinal", descending=True)
                .over(pl.col("label"), pl.when(candidate).then(1).otherwise(0))
                - 1
            )
            .cast(pl.Int64)
            .alias("rank")
        )
        .sort("_order")
        .drop("_order")
    )
    limit = cap(per_label, has_classifier)
    within = pl.col("rank").is_not_null() if limit is None else pl.col("rank") < limit
    return ranked.with_columns(within.fill_null(False).alias("chosen"))


def _missing(frame: pl.DataFrame, labels: Sequence[str]) -> float:
    """The model's probability of a label it gave without probabilities: 1 where no
    document has any (an engine that returns none: the classifier alone ranks), else 0,
    so such a document comes after every measured one."""
    return 1.0 if frame[f"{MODEL_P}{labels[0]}"].null_count() == frame.height else 0.0


def _of_label(prefix: str, labels: Sequence[str]) -> pl.Expr:
    """The value of the column `prefix + label` for each row's own label (null where the
    row has no label or the column is null)."""
    expr = pl.lit(None, dtype=pl.Float64)
    for name in labels:
        expr = pl.when(pl.col("label") == name).then(pl.col(f"{prefix}{name}")).otherwise(expr)
    return expr


def summary(frame: pl.DataFrame, labels: Sequence[str], per_label: int | None) -> dict[str, Any]:
    """What the choice kept and left out, per label, for the manifest and the report."""
    checked = frame["agree"].null_count() < frame.height
    limit = cap(per_label, checked)
    if limit is None:
        rule = "every document whose model label the few-shot classifier agrees with"
    else:
        rule = f"per label, the {limit} most confident documents" + (
            " whose model label the few-shot classifier agrees with" if checked else ""
        )
    out: dict[str, Any] = {
        "rule": rule,
        "cap": limit,
        "documents": frame.height,
        "unanswered": int(frame["label"].null_count()),
        "disagreed": int((frame["agree"] == False).sum()),  # noqa: E712 (a polars expression)
        "per_label": {},
    }
    for name in labels:
        own = frame.filter(pl.col("label") == name)
        chosen = own.filter(pl.col("chosen"))
        out["per_label"][name] = {
            "answered": own.height,
            "candidates": int(own["rank"].is_not_null().sum()),
            "chosen": chosen.height,
            "least_confidence_chosen": None
            if chosen.height == 0
            else round(float(chosen["confidence"].min()), 4),  # type: ignore[arg-type]
        }
    out["chosen"] = sum(v["chosen"] for v in out["per_label"].values())
    return out
