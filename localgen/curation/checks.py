"""The curation rules, one function each: which rows a rule finds, and what it reports
about itself. None of them drops a row; `localgen.curation.curate` charges the drops."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from localgen.config import CurateConfig
from localgen.curation.similarity import copied_spans, greedy_duplicates
from localgen.data import LabeledData
from localgen.text import ngrams, normalize, words
from localgen.vectors.linear import cross_val_accuracy, fit_linear
from localgen.vectors.neighbours import nearest, pair_search


@dataclass(frozen=True)
class Finding:
    rule: str
    detail: str
    match: str | None = None  # id of the row or example it matches
    score: float | None = None


@dataclass
class RuleResult:
    """One rule's findings by row index, and what it reports about itself."""

    findings: dict[int, Finding] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    # label-fidelity: the judge's label and confidence per row (None: no opinion)
    judged: tuple[list[str | None], list[float | None]] = ([], [])


def length(texts: list[str], config: CurateConfig) -> RuleResult:
    result = RuleResult(info={"min_words": config.min_words, "max_words": config.max_words})
    for i, text in enumerate(texts):
        n = len(words(text))
        if n < config.min_words:
            result.findings[i] = Finding("length", f"{n} words, fewer than {config.min_words}")
        elif config.max_words is not None and n > config.max_words:
            result.findings[i] = Finding("length", f"{n} words, more than {config.max_words}")
    return result


# What a generated row should not hold unless the real rows of its label do: the markup
# and placeholders small models write once the grammar admits any character (issue
# measured on three held-out tasks: synthetic-only macro-F1 fell by up to 0.27 with them).
MARKUP: dict[str, re.Pattern[str]] = {
    "template braces": re.compile(r"[{}]"),
    "a bracketed slot": re.compile(r"\[[^\]\n]{0,80}\]|^\s*\["),  # or a row opening with one
    "a tag": re.compile(r"</?[A-Za-z!][^<>\n]{0,80}>"),
    "an HTML entity": re.compile(r"&#?[A-Za-z0-9]{1,8};"),
    "a URL": re.compile(r"https?://|\bwww\.[A-Za-z0-9-]+\.", re.IGNORECASE),
    "a file name": re.compile(
        r"\b[\w-]+\.(?:py|js|json|txt|csv|html?|xml|jpe?g|png|gif|pdf|docx?|exe|md|ya?ml|toml|sh)\b",
        re.IGNORECASE,
    ),
}


def markup(
    texts: list[str],
    tokens: list[list[str]],
    labels: list[str],
    real: LabeledData | None,
    prompt: list[str],
    config: CurateConfig,
) -> RuleResult:
    """Rows holding markup or a placeholder (MARKUP) that no real row of their label
    holds, and rows that repeat `echo_words` consecutive words of the prompt's own text
    (the task's context and descriptions, the templates' instructions) that no real row
    of their label repeats."""
    real_rows: dict[str, list[str]] = {}
    if real is not None:
        for text, label in real.frame.select("text", "label").iter_rows():
            real_rows.setdefault(label, []).append(text)
    allowed = {  # the kinds of markup some real row of the label holds
        label: {kind for kind, pattern in MARKUP.items() if any(map(pattern.search, rows))}
        for label, rows in real_rows.items()
    }
    n = config.echo_words
    said = {gram for text in prompt for gram in ngrams(words(text), n)}
    in_real = {
        label: {gram for text in rows for gram in ngrams(words(text), n)} & said
        for label, rows in real_rows.items()
    }
    kinds: Counter[str] = Counter()
    result = RuleResult(info={"kinds": sorted(MARKUP), "echo_words": n})
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        # `tokens[i]` is `words(text)`, made once for every rule
        for kind, pattern in MARKUP.items():
            found = pattern.search(text)
            if found and kind not in allowed.get(label, set()):
                detail = f"holds {kind} ({found.group(0)[:40]!r}), as no real row of the label does"
                result.findings[i] = Finding("markup", detail)
                kinds[kind] += 1
                break
        else:
            echoed = [g for g in ngrams(tokens[i], n) if g in said]
            echoed = [g for g in echoed if g not in in_real.get(label, set())]
            if echoed:
                shown = " ".join(echoed[0])
                result.findings[i] = Finding("markup", f"repeats the prompt: {shown!r}")
                kinds["the prompt repeated"] += 1
    result.info["found"] = dict(sorted(kinds.items()))
    return result


def exact_duplicate(texts: list[str], ids: list[str], real: LabeledData | None) -> RuleResult:
    result = RuleResult(info={"normalisation": "NFKC, case folded, punctuation removed"})
    first: dict[str, int] = {}
    real_ids: dict[str, str] = {}
    if real is not None:
        for rid, text in real.frame.select("id", "text").iter_rows():
            real_ids.setdefault(normalize(text), rid)
    within = against = 0
    for i, text in enumerate(texts):
        key = normalize(text)
        if key in real_ids:
            result.findings[i] = Finding(
                "exact-duplicate", "the same text as a real example", real_ids[key], 1.0
            )
            against += 1
        elif key in first:
            result.findings[i] = Finding(
                "exact-duplicate", "the same text as an earlier row", ids[first[key]], 1.0
            )
            within += 1
        else:
            first[key] = i
    result.info.update(within_synthetic=within, against_real=against)
    return result


def leakage(
    tokens: list[list[str]],
    shown: list[set[str]],
    real: LabeledData | None,
    config: CurateConfig,
    documents: pl.DataFrame | None = None,
) -> RuleResult:
    """Rows that copy a run of words from a real example or from one of the documents."""
    sources: list[tuple[str, str, str]] = []  # id, text, what it is
    if real is not None:
        sources += [
            (i, t, "a real example") for i, t in real.frame.select("id", "text").iter_rows()
        ]
    if documents is not None:
        sources += [(i, t, "a document") for i, t in documents.select("id", "text").iter_rows()]
    result = RuleResult(
        info={"min_span_words": config.leak_words, "documents": documents is not None}
    )
    source_tokens = [words(text) for _, text, _ in sources]
    for i, (s, span) in copied_spans(tokens, source_tokens, config.leak_words).items():
        source_id, _, kind = sources[s]
        seen = "shown to the model" if source_id in shown[i] else "not shown to the model"
        result.findings[i] = Finding(
            "leakage", f"copies {span} consecutive words of {kind} ({seen})", source_id, span
        )
    result.info["shown_to_model"] = sum(
        f.match in shown[i] for i, f in result.findings.items() if f.match
    )
    spans = [int(f.score or 0) for f in result.findings.values()]
    result.info["longest_span_words"] = max(spans, default=0)
    return result


def contamination(
    tokens: list[list[str]],
    vectors: np.ndarray,
    evaluation: LabeledData,
    eval_vectors: np.ndarray,
    config: CurateConfig,
) -> RuleResult:
    eval_ids = evaluation.frame["id"].to_list()
    result = RuleResult(info={"cosine": config.contamination, "min_span_words": config.leak_words})
    where, best = nearest(vectors, eval_vectors)
    for i in np.nonzero(best >= config.contamination)[0]:
        i = int(i)
        result.findings[i] = Finding(
            "contamination",
            f"cosine {best[i]:.3f} to an evaluation row",
            eval_ids[int(where[i])],
            round(float(best[i]), 4),
        )
    eval_tokens = [words(t) for t in evaluation.frame["text"]]
    for i, (s, span) in copied_spans(tokens, eval_tokens, config.leak_words).items():
        result.findings.setdefault(
            i,
            Finding(
                "contamination",
                f"shares {span} consecutive words with an evaluation row",
                eval_ids[s],
                span,
            ),
        )
    return result


def near_duplicate(
    vectors: np.ndarray,
    ids: list[str],
    real: LabeledData | None,
    real_vectors: np.ndarray,
    config: CurateConfig,
) -> RuleResult:
    result = RuleResult(info={"cosine": config.near_duplicate})
    if real is not None and len(real_vectors):
        where, best = nearest(vectors, real_vectors)
        real_ids = real.frame["id"].to_list()
        for i in np.nonzero(best >= config.near_duplicate)[0]:
            i = int(i)
            result.findings[i] = Finding(
                "near-duplicate",
                f"cosine {best[i]:.3f} to a real example",
                real_ids[int(where[i])],
                round(float(best[i]), 4),
            )
    against = len(result.findings)
    for i, (j, sim) in greedy_duplicates(vectors, config.near_duplicate).items():
        result.findings.setdefault(
            i,
            Finding("near-duplicate", f"cosine {sim:.3f} to an earlier row", ids[j], round(sim, 4)),
        )
    result.info.update(
        against_real=against,
        within_synthetic=len(result.findings) - against,
        search=pair_search(len(vectors)),
    )
    return result


def label_fidelity(
    labels: list[str],
    vectors: np.ndarray,
    real: LabeledData,
    real_vectors: np.ndarray,
    config: CurateConfig,
) -> RuleResult:
    real_labels = real.frame["label"].to_list()
    names = sorted(set(real_labels))
    head = fit_linear(real_vectors, real_labels, names)
    proba = head.proba(vectors)
    judged = [names[k] for k in proba.argmax(axis=1)]
    confidence = [round(float(p), 4) for p in proba.max(axis=1)]
    accuracy = round(cross_val_accuracy(real_vectors, real_labels), 4)
    result = RuleResult(
        info={
            "judge": "linear classifier on sentence embeddings, trained on the real data",
            "judge_cross_val_accuracy": accuracy,
            "action": config.mislabeled,
            "unjudged": sum(label not in names for label in labels),
        }
    )
    if config.mislabeled == "confident":
        result.info |= {
            "min_confidence": config.judge_confidence,
            "min_cross_val_accuracy": config.judge_accuracy,
            "trusted": accuracy >= config.judge_accuracy,
        }
    out_label: list[str | None] = []
    out_conf: list[float | None] = []
    for i, label in enumerate(labels):
        if label not in names:  # the judge never saw this label: no opinion
            out_label.append(None)
            out_conf.append(None)
            continue
        out_label.append(judged[i])
        out_conf.append(confidence[i])
        if judged[i] != label:
            result.findings[i] = Finding(
                "label-fidelity",
                f"the judge says {judged[i]} (p={confidence[i]:.2f})",
                None,
                confidence[i],
            )
    disagree: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        if out_label[i] is not None:
            disagree.setdefault(label, []).append(int(i in result.findings))
    result.info["disagreement_per_label"] = {
        label: round(sum(v) / len(v), 4) for label, v in sorted(disagree.items())
    }
    result.judged = (out_label, out_conf)
    result.info["confident"] = sum(
        1 for f in result.findings.values() if (f.score or 0) >= config.judge_confidence
    )
    return result


def judge_drops(result: RuleResult, config: CurateConfig) -> set[int]:
    """The rows label-fidelity drops: all it disputes ("drop"), none ("flag"), or those it
    is confident about when it cross-validates well enough to be trusted ("confident")."""
    if config.mislabeled == "drop":
        return set(result.findings)
    if config.mislabeled == "flag" or not result.info.get("trusted"):
        return set()
    return {i for i, f in result.findings.items() if (f.score or 0) >= config.judge_confidence}


def label_consistency(
    labels: list[str], answers: list[str | None], config: CurateConfig
) -> RuleResult:
    """Rows the generating model itself, asked which label they belong to, gave another
    label (the label check of `localgen.planning.check`)."""
    result = RuleResult(info={"action": config.inconsistent, "unchecked": answers.count(None)})
    agree: dict[str, list[int]] = {}
    for i, (label, answer) in enumerate(zip(labels, answers, strict=True)):
        if answer is None:
            continue
        agree.setdefault(label, []).append(int(answer == label))
        if answer != label:
            result.findings[i] = Finding(
                "label-consistency", f"the generating model says {answer}", None, None
            )
    result.info["agreement_per_label"] = {
        label: round(sum(v) / len(v), 4) for label, v in sorted(agree.items())
    }
    return result


def on_topic(labels: list[str], likelihood: list[float | None], config: CurateConfig) -> RuleResult:
    """The least likely rows of each label under the prompt they were written from (mean
    token log-probability; SuperGen, Meng et al. 2022): all but the best
    `on_topic_share` of each label's rows."""
    result = RuleResult(info={"keep_share": config.on_topic_share})
    by_label: dict[str, list[int]] = {}
    for i, (label, value) in enumerate(zip(labels, likelihood, strict=True)):
        if value is not None:
            by_label.setdefault(label, []).append(i)
    cutoffs = {}
    for label, rows in sorted(by_label.items()):
        ranked = sorted(rows, key=lambda i: -float(likelihood[i]))  # type: ignore[arg-type]
        kept = max(1, round(len(ranked) * config.on_topic_share))
        cutoffs[label] = round(float(likelihood[ranked[kept - 1]]), 4)  # type: ignore[arg-type]
        for i in ranked[kept:]:
            result.findings[i] = Finding(
                "on-topic",
                f"mean log-probability {likelihood[i]:.3f}, below the label's cut-off "
                f"{cutoffs[label]:.3f}",
                None,
                likelihood[i],
            )
    result.info["cutoff_per_label"] = cutoffs
    result.info["unscored"] = sum(v is None for v in likelihood)
    return result


def surplus(labels: list[str], dropped_by: list[str | None], keep: int) -> RuleResult:
    """The rows of each label beyond the first `keep` (in row order) that no other rule
    dropped: what `--keep N` leaves out so that every label trains on N rows."""
    result = RuleResult(info={"keep_per_label": keep})
    passed: Counter[str] = Counter()
    for i, (label, dropped) in enumerate(zip(labels, dropped_by, strict=True)):
        if dropped is None:
            passed[label] += 1
            if passed[label] > keep:
                result.findings[i] = Finding("surplus", f"the label already has {keep} rows")
    result.info["passed_per_label"] = dict(sorted(passed.items()))
    return result
