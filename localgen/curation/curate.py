"""Curation of a finished run: which rows to keep, and why each other row was dropped.

Every rule runs on every row, so each rule's rate is measured on its own; a dropped row is
charged to the first rule in `RULES` that fired on it. The rules:

- length: fewer than `min_words` words (empty rows too), or more than `max_words`.
- exact-duplicate: the same text after normalisation (Unicode NFKC, case folded,
  punctuation and spacing collapsed) as an earlier row, or as a real example.
- leakage: the row shares a run of at least `leak_words` consecutive words with a real
  example: a private passage reproduced. The finding says whether the model was shown
  that example (the row's positive or negative ids).
- contamination: the row is within `contamination` cosine of an evaluation row, or shares
  a run of `leak_words` words with one.
- near-duplicate: cosine similarity of at least `near_duplicate` to an earlier kept row
  (greedy, in row order) or to a real example.
- label-fidelity: a linear classifier trained on the real data disagrees with the row's
  label. Flagged (kept, with the judge's label in the table) or dropped.

The raw rows are never touched: `curated.parquet` and `curation.json` are new files.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from localgen.artifacts import utc_now, write_json, write_table
from localgen.classify.classifier import cross_val_accuracy, fit_linear
from localgen.config import CurateConfig
from localgen.curation.rules import RULES
from localgen.data import LabeledData, check_labels, read_labeled
from localgen.errors import DataError
from localgen.generation.store import CURATED, CURATION, RunFolder
from localgen.offline import egress_guard
from localgen.progress import Say, silent
from localgen.report.metrics import BLOCK, ngrams, words
from localgen.vectors.encoder import cache_file, encode_cached

FORMAT_VERSION = 1
_NOT_WORD = re.compile(r"[\W_]+")


class TextEncoder(Protocol):
    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


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


def normalize(text: str) -> str:
    """The form two texts must share to be exact duplicates."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _NOT_WORD.sub(" ", folded).strip()


def longest_common_span(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest run of consecutive tokens that `a` and `b` share."""
    best = 0
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0] * (len(b) + 1)
        for j, other in enumerate(b, start=1):
            if token == other:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def copied_spans(
    texts: Sequence[Sequence[str]], sources: Sequence[Sequence[str]], min_words: int
) -> dict[int, tuple[int, int]]:
    """For each text sharing a run of >= min_words tokens with a source:
    (index of the source with the longest shared run, its length)."""
    index: dict[tuple[str, ...], set[int]] = defaultdict(set)
    for s, tokens in enumerate(sources):
        for gram in ngrams(tokens, min_words):
            index[gram].add(s)
    out = {}
    for i, tokens in enumerate(texts):
        candidates = set().union(*(index.get(g, ()) for g in ngrams(tokens, min_words)))
        if candidates:
            out[i] = max(
                ((s, longest_common_span(tokens, sources[s])) for s in sorted(candidates)),
                key=lambda pair: pair[1],
            )
    return out


def nearest(vectors: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each vector, the index of the most similar of `others` and that cosine."""
    if len(others) == 0 or len(vectors) == 0:
        return np.zeros(len(vectors), dtype=np.int64), np.full(len(vectors), -1.0)
    where, best = [], []
    for start in range(0, len(vectors), BLOCK):
        sims = vectors[start : start + BLOCK] @ others.T
        where.append(sims.argmax(axis=1))
        best.append(sims.max(axis=1))
    return np.concatenate(where), np.concatenate(best)


def greedy_duplicates(vectors: np.ndarray, threshold: float) -> dict[int, tuple[int, float]]:
    """Rows within `threshold` cosine of an earlier row that is itself kept:
    row -> (the kept row it repeats, cosine). The first row of each group is kept."""
    earlier: dict[int, list[tuple[int, float]]] = {}
    for start in range(0, len(vectors), BLOCK):
        sims = vectors[start : start + BLOCK] @ vectors[: start + BLOCK].T
        for r, c in zip(*np.nonzero(sims >= threshold), strict=True):
            i = start + int(r)
            if int(c) < i:
                earlier.setdefault(i, []).append((int(c), float(sims[r, c])))
    out: dict[int, tuple[int, float]] = {}
    for i in sorted(earlier):
        kept = [(j, s) for j, s in earlier[i] if j not in out]
        if kept:
            out[i] = max(kept, key=lambda pair: pair[1])
    return out


def _length(texts: list[str], config: CurateConfig) -> RuleResult:
    result = RuleResult(info={"min_words": config.min_words, "max_words": config.max_words})
    for i, text in enumerate(texts):
        n = len(words(text))
        if n < config.min_words:
            result.findings[i] = Finding("length", f"{n} words, fewer than {config.min_words}")
        elif config.max_words is not None and n > config.max_words:
            result.findings[i] = Finding("length", f"{n} words, more than {config.max_words}")
    return result


def _exact(texts: list[str], ids: list[str], real: LabeledData | None) -> RuleResult:
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


def _leakage(
    tokens: list[list[str]], shown: list[set[str]], real: LabeledData, config: CurateConfig
) -> RuleResult:
    real_ids = real.frame["id"].to_list()
    real_tokens = [words(t) for t in real.frame["text"]]
    result = RuleResult(info={"min_span_words": config.leak_words})
    for i, (s, span) in copied_spans(tokens, real_tokens, config.leak_words).items():
        was_shown = real_ids[s] in shown[i]
        seen = "shown to the model" if was_shown else "not shown to the model"
        result.findings[i] = Finding(
            "leakage",
            f"copies {span} consecutive words of a real example ({seen})",
            real_ids[s],
            span,
        )
    result.info["shown_to_model"] = sum(
        f.match in shown[i] for i, f in result.findings.items() if f.match
    )
    spans = [int(f.score or 0) for f in result.findings.values()]
    result.info["longest_span_words"] = max(spans, default=0)
    return result


def _contamination(
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


def _near(
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
    result.info.update(against_real=against, within_synthetic=len(result.findings) - against)
    return result


def _fidelity(
    labels: list[str],
    vectors: np.ndarray,
    real: LabeledData,
    real_vectors: np.ndarray,
    config: CurateConfig,
) -> tuple[RuleResult, list[str | None], list[float | None]]:
    real_labels = real.frame["label"].to_list()
    names = sorted(set(real_labels))
    head = fit_linear(real_vectors, real_labels, names)
    proba = head.proba(vectors)
    judged = [names[k] for k in proba.argmax(axis=1)]
    confidence = [round(float(p), 4) for p in proba.max(axis=1)]
    result = RuleResult(
        info={
            "judge": "linear classifier on sentence embeddings, trained on the real data",
            "judge_cross_val_accuracy": round(cross_val_accuracy(real_vectors, real_labels), 4),
            "action": config.mislabeled,
            "unjudged": sum(label not in names for label in labels),
        }
    )
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
    return result, out_label, out_conf


def _skipped(reason: str) -> dict[str, Any]:
    return {"enabled": False, "reason": reason}


def load_real(
    path: Path | None, text_column: str, label_column: str, manifest: dict[str, Any]
) -> LabeledData | None:
    """The real data: `path` when given, else the run's --seed-data when it still exists."""
    if path is not None:
        return read_labeled(path, text_column, label_column)
    seed = manifest.get("seed_data") or {}
    path = seed.get("path")
    if not path or not Path(path).is_file():
        return None
    return read_labeled(path, seed.get("text_column", "text"), seed.get("label_column", "label"))


def curate(
    config: CurateConfig,
    encoder: TextEncoder | None = None,
    say: Say = silent,
) -> dict[str, Any]:
    """Run every rule on the run's rows, write curated.parquet and curation.json, and
    return the curation summary (what curation.json holds). Network access other than
    loopback is refused meanwhile, and the summary records any attempt."""
    with egress_guard() as audit:
        curated, summary = _curate(config, encoder, say)
    summary["egress"] = audit.as_dict()
    write_table(curated, config.run_dir / CURATED)
    write_json(config.run_dir / CURATION, summary)
    return summary


def _curate(
    config: CurateConfig, encoder: TextEncoder | None, say: Say
) -> tuple[pl.DataFrame, dict[str, Any]]:
    folder = RunFolder(config.run_dir)
    rows = folder.read_rows()
    manifest = folder.read_manifest() or {}
    unknown = sorted(set(config.skip) - set(RULES))
    if unknown:
        raise DataError(f"unknown rule {unknown[0]}; the rules are {', '.join(RULES)}")
    if rows.height == 0:
        raise DataError(f"{config.run_dir} holds no rows to curate")
    real = load_real(config.real, config.text_column, config.label_column, manifest)
    task_labels = list((manifest.get("task") or {}).get("labels") or [])
    if real is not None and task_labels:
        check_labels(real, task_labels)
    evaluation = None
    if config.eval is not None:
        evaluation = read_labeled(config.eval, config.text_column, config.label_column)

    ids: list[str] = rows["id"].to_list()
    texts: list[str] = rows["text"].to_list()
    labels: list[str] = rows["label"].to_list()
    # Exact duplicates share an id (a hash of the text); the request key names one row.
    keys: list[str | None] = (
        rows["request_key"].to_list() if "request_key" in rows.columns else [None] * len(ids)
    )
    tokens = [words(t) for t in texts]
    shown = [
        set(p or []) | set(n or [])
        for p, n in zip(rows["positive_ids"].to_list(), rows["negative_ids"].to_list(), strict=True)
    ]
    active = [r for r in RULES if r not in config.skip]
    needs_vectors = {"contamination", "near-duplicate", "label-fidelity"} & set(active)
    if needs_vectors and encoder is None:
        from localgen.vectors.encoder import default_encoder

        encoder = default_encoder()
    vectors = real_vectors = eval_vectors = np.zeros((0, 1), dtype=np.float32)
    if encoder is not None and needs_vectors:
        say(f"embedding {len(texts)} rows")
        vectors = encode_cached(encoder, ids, texts, cache_file(config.run_dir, encoder))
        if real is not None:
            real_vectors = encoder.encode(real.frame["text"].to_list())
        if evaluation is not None:
            eval_vectors = encoder.encode(evaluation.frame["text"].to_list())

    results: dict[str, RuleResult] = {}
    report: dict[str, dict[str, Any]] = {}
    judge_label: list[str | None] = [None] * len(ids)
    judge_conf: list[float | None] = [None] * len(ids)
    for rule in RULES:
        if rule not in active:
            report[rule] = _skipped("switched off (--skip)")
            continue
        say(f"rule {rule}")
        if rule == "length":
            results[rule] = _length(texts, config)
        elif rule == "exact-duplicate":
            results[rule] = _exact(texts, ids, real)
        elif rule == "leakage":
            if real is None:
                report[rule] = _skipped("no real data (--real, or the run's --seed-data)")
                continue
            results[rule] = _leakage(tokens, shown, real, config)
        elif rule == "contamination":
            if evaluation is None:
                report[rule] = _skipped("no evaluation data (--eval)")
                continue
            results[rule] = _contamination(tokens, vectors, evaluation, eval_vectors, config)
        elif rule == "near-duplicate":
            results[rule] = _near(vectors, ids, real, real_vectors, config)
        elif rule == "label-fidelity":
            if real is None or real.frame["label"].n_unique() < 2:
                report[rule] = _skipped("needs real data with at least two labels")
                continue
            results[rule], judge_label, judge_conf = _fidelity(
                labels, vectors, real, real_vectors, config
            )

    drops_on = {rule for rule in results if rule != "label-fidelity" or config.mislabeled == "drop"}
    dropped_by: list[str | None] = [None] * len(ids)
    for rule in RULES:
        if rule in drops_on:
            for i in results[rule].findings:
                dropped_by[i] = dropped_by[i] or rule
    for rule, result in results.items():
        charged = sum(1 for d in dropped_by if d == rule)
        report[rule] = {
            "enabled": True,
            **result.info,
            "flagged": len(result.findings),
            "flagged_rate": round(len(result.findings) / len(ids), 4),
            "dropped": charged,
        }

    report = {rule: report[rule] for rule in RULES}  # the table's order is the charging order
    keep = [d is None for d in dropped_by]
    curated = rows.with_columns(
        pl.Series("judge_label", judge_label, dtype=pl.Utf8),
        pl.Series("judge_confidence", judge_conf, dtype=pl.Float64),
    ).filter(pl.Series(keep))
    per_label: dict[str, dict[str, int]] = {}
    for label, kept in zip(labels, keep, strict=True):
        counts = per_label.setdefault(label, {"input": 0, "kept": 0})
        counts["input"] += 1
        counts["kept"] += kept
    row_findings = []
    for i in range(len(ids)):
        found = [results[r].findings[i] for r in RULES if r in results and i in results[r].findings]
        if found:
            row_findings.append(
                {
                    "id": ids[i],
                    "request_key": keys[i],
                    "label": labels[i],
                    "dropped_by": dropped_by[i],
                    "findings": [
                        {"rule": f.rule, "detail": f.detail, "match": f.match, "score": f.score}
                        for f in found
                    ],
                }
            )
    summary = {
        "format_version": FORMAT_VERSION,
        "created_at": utc_now(),
        "inputs": {
            "rows": len(ids),
            "real": None if real is None else {"path": real.source, "rows": real.frame.height},
            "eval": None
            if evaluation is None
            else {"path": evaluation.source, "rows": evaluation.frame.height},
            "encoder": None if not needs_vectors else str(getattr(encoder, "path", "custom")),
        },
        "counts": {
            "input": len(ids),
            "kept": curated.height,
            "dropped": len(ids) - curated.height,
            "per_label": dict(sorted(per_label.items())),
        },
        "rules": report,
        "rows": row_findings,
    }
    return curated, summary


def summary_table(summary: dict[str, Any]) -> str:
    """The curation outcome as a few lines for a terminal."""
    counts = summary["counts"]
    lines = [f"{counts['kept']} of {counts['input']} rows kept ({counts['dropped']} dropped)"]
    lines.append(f"{'rule':<16} {'flagged':>8} {'dropped':>8}  setting")
    for rule in RULES:
        entry = summary["rules"][rule]
        if not entry["enabled"]:
            lines.append(f"{rule:<16} {'-':>8} {'-':>8}  off: {entry['reason']}")
            continue
        setting = {
            "length": f"min {entry.get('min_words')} words, max {entry.get('max_words')}",
            "exact-duplicate": "after normalisation",
            "leakage": f"a run of {entry.get('min_span_words')} words from a real example",
            "contamination": f"cosine >= {entry.get('cosine')} or "
            f"{entry.get('min_span_words')} shared words",
            "near-duplicate": f"cosine >= {entry.get('cosine')}",
            "label-fidelity": f"{entry.get('action')}; judge cross-val accuracy "
            f"{entry.get('judge_cross_val_accuracy')}",
        }[rule]
        lines.append(f"{rule:<16} {entry['flagged']:>8} {entry['dropped']:>8}  {setting}")
    return "\n".join(lines)
