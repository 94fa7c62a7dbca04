"""Curation of a finished run: which rows to keep, and why each other row was dropped.

Every rule runs on every row, so each rule's rate is measured on its own; a dropped row is
charged to the first rule in `RULES` that fired on it. The rules:

- length: fewer than `min_words` words (empty rows too), or more than `max_words`.
- markup: the row holds template braces, a bracketed slot, a tag, an HTML entity, a URL
  or a file name that no real row of its label holds, or repeats `echo_words`
  consecutive words of the prompt's own text (the task's context, style, descriptions
  and instructions, the template's wording): placeholders and echoes, not messages.
- exact-duplicate: the same text after normalisation (Unicode NFKC, case folded,
  punctuation and spacing collapsed) as an earlier row, or as a real example.
- leakage: the row shares a run of at least `leak_words` consecutive words with a real
  example, or with one of the user's documents (a run with --documents): a private
  passage reproduced. The finding says whether the model was shown that example or
  document (the row's positive or negative ids).
- contamination: the row is within `contamination` cosine of an evaluation row, or shares
  a run of `leak_words` words with one.
- near-duplicate: cosine similarity of at least `near_duplicate` to an earlier kept row
  (greedy, in row order) or to a real example.
- label-consistency: the generating model, asked which label the row belongs to (the
  check_label column that generate's label check writes), answered another. Dropped or
  flagged; the agreement rate per label is reported.
- on-topic: the row is among the least likely of its label under its own prompt (the
  mean token log-probability the engine returned, the mean_logprob column): only the
  best `on_topic_share` of each label is kept.
- label-fidelity: a linear classifier trained on the real data disagrees with the row's
  label. Flagged (kept, with the judge's label in the table), dropped, or dropped only
  where the judge is confident and cross-validates well on the real data ("confident").
- surplus: with `keep` N, a label's rows beyond the first N (in row order) that every
  other rule kept, so that each label keeps N (`localgen run --keep` grows the run
  until they are there).

The raw rows are never touched: `curated.parquet` and `curation.json` are new files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from localgen.artifacts import utc_now, write_json, write_table
from localgen.config import CurateConfig
from localgen.curation import checks
from localgen.curation.checks import RuleResult
from localgen.curation.rules import RULES
from localgen.data import LabeledData, check_labels, read_labeled
from localgen.errors import DataError, TaskError
from localgen.generation.store import CURATED, CURATION, RunFolder
from localgen.locks import writing
from localgen.offline import egress_guard
from localgen.planning.prompts import PromptLibrary
from localgen.progress import Say, silent
from localgen.text import words
from localgen.vectors.encoder import TextEncoder, cache_file, encode_cached

FORMAT_VERSION = 1


def _skipped(reason: str) -> dict[str, Any]:
    return {"enabled": False, "reason": reason}


def curate(
    config: CurateConfig, encoder: TextEncoder | None = None, say: Say = silent
) -> dict[str, Any]:
    """Run every rule on the run's rows, write curated.parquet and curation.json, and
    return the curation summary (what curation.json holds). Network access other than
    loopback is refused meanwhile, and the summary records any attempt."""
    with writing(config.run_dir, "curate", create=False):
        with egress_guard() as audit:
            data = _read(config)
            active = [r for r in RULES if r not in config.skip]
            encoder_name = _embed(data, config, active, encoder, say)
            results, report = _run_rules(data, config, active, say)
            dropped_by = _charge(results, config, data.labels, active)
            curated, summary = _summary(data, results, report, dropped_by, encoder_name)
        summary["egress"] = audit.as_dict()
        write_table(curated, config.run_dir / CURATED)
        write_json(config.run_dir / CURATION, summary)
    return summary


_NO_VECTORS = np.zeros((0, 1), dtype=np.float32)
SHOWN_CHARS = 200  # of a found row's text in curation.json
JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)  # variables, blocks, comments
_NEEDS_VECTORS = {"contamination", "near-duplicate", "label-fidelity"}


@dataclass
class _Rows:
    """The run's rows as the rules read them, and the data they are compared with."""

    frame: pl.DataFrame
    real: LabeledData | None
    evaluation: LabeledData | None
    documents: pl.DataFrame | None  # the user's documents the run generated from: id, text
    prompt: list[str]  # the prompts' own text: the task's strings, the templates' wording
    ids: list[str]
    texts: list[str]
    labels: list[str]
    keys: list[str | None]  # exact duplicates share an id; the request key names one row
    answers: list[str | None] | None  # the label check's answers; None: no check ran
    likelihood: list[float | None] | None  # mean log-probabilities; None: not recorded
    tokens: list[list[str]]
    shown: list[set[str]]  # ids of the examples the model was shown for each row
    vectors: np.ndarray = field(default_factory=lambda: _NO_VECTORS)
    real_vectors: np.ndarray = field(default_factory=lambda: _NO_VECTORS)
    eval_vectors: np.ndarray = field(default_factory=lambda: _NO_VECTORS)


def _read(config: CurateConfig) -> _Rows:
    """Check the settings and read every input before any work."""
    unknown = sorted(set(config.skip) - set(RULES))
    if unknown:
        raise DataError(f"unknown rule {unknown[0]}; the rules are {', '.join(RULES)}")
    folder = RunFolder(config.run_dir)
    rows = folder.read_rows()
    if rows.height == 0:
        raise DataError(f"{config.run_dir} holds no rows to curate")
    real = folder.real_data(config.real, config.text_column, config.label_column)
    task = (folder.read_manifest() or {}).get("task") or {}
    task_labels = list(task.get("labels") or [])
    if real is not None and task_labels:
        check_labels(real, task_labels)
    documents = folder.documents()
    templates = rows["template"].unique().to_list() if "template" in rows.columns else []
    evaluation = None
    if config.eval is not None:
        evaluation = read_labeled(config.eval, config.text_column, config.label_column)
    texts: list[str] = rows["text"].to_list()
    positives, negatives = rows["positive_ids"].to_list(), rows["negative_ids"].to_list()
    return _Rows(
        frame=rows,
        real=real,
        evaluation=evaluation,
        documents=documents,
        prompt=_prompt_text(task, templates),
        ids=rows["id"].to_list(),
        texts=texts,
        labels=rows["label"].to_list(),
        keys=rows["request_key"].to_list()
        if "request_key" in rows.columns
        else [None] * rows.height,
        answers=_column(rows, "check_label"),
        likelihood=_column(rows, "mean_logprob"),
        tokens=[words(t) for t in texts],
        shown=[set(p or []) | set(n or []) for p, n in zip(positives, negatives, strict=True)],
    )


def _prompt_text(task: dict[str, Any], templates: list[str | None]) -> list[str]:
    """What the prompts said in their own words: the task file's strings and each
    template's text outside its Jinja tags (a template that is gone adds nothing)."""
    generation = task.get("generation") or {}
    texts = [task.get("context") or "", generation.get("style") or ""]
    texts.append(generation.get("instructions") or "")
    for spec in (task.get("labels") or {}).values():
        texts += [spec.get("description") or "", spec.get("instructions") or ""]
    library = PromptLibrary()
    for name in templates:
        try:
            source = library.get(str(name)).source
        except TaskError:
            continue
        texts.append(JINJA_TAG.sub(" __slot__ ", source))  # no run of words across a tag
    return [text for text in texts if text.strip()]


def _column(rows: pl.DataFrame, name: str) -> list[Any] | None:
    """A column's values, or None when the run has no value in it (an older run, or an
    engine that gives none)."""
    if name not in rows.columns or rows[name].null_count() == rows.height:
        return None
    return rows[name].to_list()


def _embed(
    data: _Rows, config: CurateConfig, active: list[str], encoder: TextEncoder | None, say: Say
) -> str | None:
    """Embed the rows (reusing the run folder's cache), the real and the evaluation data,
    when an active rule needs vectors; return the encoder's name for the summary."""
    if not _NEEDS_VECTORS & set(active):
        return None
    if encoder is None:
        from localgen.vectors.encoder import default_encoder

        encoder = default_encoder()
    say(f"embedding {len(data.texts)} rows")
    data.vectors = encode_cached(
        encoder, data.ids, data.texts, cache_file(config.run_dir, encoder), say
    )
    if data.real is not None:
        data.real_vectors = encoder.encode(data.real.frame["text"].to_list())
    if data.evaluation is not None:
        data.eval_vectors = encoder.encode(data.evaluation.frame["text"].to_list())
    return str(getattr(encoder, "path", "custom"))


def _apply(rule: str, data: _Rows, config: CurateConfig) -> RuleResult | str:
    """One rule's result, or why it cannot run on this data."""
    if rule == "length":
        return checks.length(data.texts, config)
    if rule == "markup":
        return checks.markup(data.texts, data.tokens, data.labels, data.real, data.prompt, config)
    if rule == "exact-duplicate":
        return checks.exact_duplicate(data.texts, data.ids, data.real)
    if rule == "leakage":
        if data.real is None and data.documents is None:
            return "no real data (--real, or the run's --seed-data)"
        return checks.leakage(data.tokens, data.shown, data.real, config, data.documents)
    if rule == "contamination":
        if data.evaluation is None:
            return "no evaluation data (--eval)"
        return checks.contamination(
            data.tokens, data.vectors, data.evaluation, data.eval_vectors, config
        )
    if rule == "near-duplicate":
        return checks.near_duplicate(data.vectors, data.ids, data.real, data.real_vectors, config)
    if rule == "label-consistency":
        if data.answers is None:
            return "no label check in this run (generate --check-labels)"
        return checks.label_consistency(data.labels, data.answers, config)
    if rule == "on-topic":
        if config.on_topic_share >= 1.0:
            return "keeps every row (--on-topic-share 1)"
        if data.likelihood is None:
            return "no log-probabilities in this run (the engine returned none)"
        return checks.on_topic(data.labels, data.likelihood, config)
    assert rule == "label-fidelity", rule
    if data.real is None or data.real.frame["label"].n_unique() < 2:
        return "needs real data with at least two labels"
    return checks.label_fidelity(data.labels, data.vectors, data.real, data.real_vectors, config)


def _run_rules(
    data: _Rows, config: CurateConfig, active: list[str], say: Say
) -> tuple[dict[str, RuleResult], dict[str, dict[str, Any]]]:
    """Every active rule on every row: the results, and the rules that did not run."""
    results: dict[str, RuleResult] = {}
    report: dict[str, dict[str, Any]] = {}
    for rule in RULES:
        if rule not in active:
            report[rule] = _skipped("switched off (--skip)")
            continue
        if rule == "surplus":  # it counts what the others keep: `_charge` runs it
            if config.keep is None:
                report[rule] = _skipped("keeps every row the other rules keep (no --keep)")
            continue
        say(f"rule {rule}")
        outcome = _apply(rule, data, config)
        if isinstance(outcome, str):
            report[rule] = _skipped(outcome)
        else:
            results[rule] = outcome
    return results, report


def _charge(
    results: dict[str, RuleResult], config: CurateConfig, labels: list[str], active: list[str]
) -> list[str | None]:
    """The rule each dropped row is charged to: the first in RULES that drops it. The
    surplus rule, last, runs here on what the others keep (its result joins `results`)."""
    dropped_by: list[str | None] = [None] * len(labels)
    for rule in RULES:
        if rule == "surplus" and rule in active and config.keep is not None:
            results[rule] = checks.surplus(labels, dropped_by, config.keep)
        if rule not in results:
            continue
        if rule == "label-fidelity":
            drops = checks.judge_drops(results[rule], config)
        elif rule == "label-consistency" and config.inconsistent == "flag":
            drops = set()
        else:
            drops = set(results[rule].findings)
        for i in drops:
            dropped_by[i] = dropped_by[i] or rule
    return dropped_by


def _row_findings(
    data: _Rows, results: dict[str, RuleResult], dropped_by: list[str | None]
) -> list[dict[str, Any]]:
    """Every row some rule found, with all its findings in rule order."""
    out = []
    for i in range(len(data.ids)):
        found = [results[r].findings[i] for r in RULES if r in results and i in results[r].findings]
        if found:
            out.append(
                {
                    "id": data.ids[i],
                    "request_key": data.keys[i],
                    "label": data.labels[i],
                    "text": data.texts[i][:SHOWN_CHARS],
                    "dropped_by": dropped_by[i],
                    "findings": [
                        {"rule": f.rule, "detail": f.detail, "match": f.match, "score": f.score}
                        for f in found
                    ],
                }
            )
    return out


def _summary(
    data: _Rows,
    results: dict[str, RuleResult],
    report: dict[str, dict[str, Any]],
    dropped_by: list[str | None],
    encoder_name: str | None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The kept rows (with the judge's label) and curation.json."""
    n = len(data.ids)
    for rule, result in results.items():
        report[rule] = {
            "enabled": True,
            **result.info,
            "flagged": len(result.findings),
            "flagged_rate": round(len(result.findings) / n, 4),
            "dropped": sum(1 for d in dropped_by if d == rule),
        }
    keep = [d is None for d in dropped_by]
    judge = results.get("label-fidelity")
    judge_label, judge_conf = judge.judged if judge is not None else ([None] * n, [None] * n)
    curated = data.frame.with_columns(
        pl.Series("judge_label", judge_label, dtype=pl.Utf8),
        pl.Series("judge_confidence", judge_conf, dtype=pl.Float64),
    ).filter(pl.Series(keep))
    per_label: dict[str, dict[str, int]] = {}
    for label, kept in zip(data.labels, keep, strict=True):
        counts = per_label.setdefault(label, {"input": 0, "kept": 0})
        counts["input"] += 1
        counts["kept"] += kept
    real, evaluation = data.real, data.evaluation
    summary = {
        "format_version": FORMAT_VERSION,
        "created_at": utc_now(),
        "inputs": {
            "rows": n,
            "real": None if real is None else {"path": real.source, "rows": real.frame.height},
            "eval": None
            if evaluation is None
            else {"path": evaluation.source, "rows": evaluation.frame.height},
            "encoder": encoder_name,
        },
        "counts": {
            "input": n,
            "kept": curated.height,
            "dropped": n - curated.height,
            "per_label": dict(sorted(per_label.items())),
        },
        "rules": {rule: report[rule] for rule in RULES},  # the table's order: charging order
        "rows": _row_findings(data, results, dropped_by),
    }
    return curated, summary


def _judge_setting(entry: dict[str, Any]) -> str:
    accuracy = entry.get("judge_cross_val_accuracy")
    if entry.get("action") != "confident":
        return f"{entry.get('action')}; judge cross-val accuracy {accuracy}"
    trusted = "trusted" if entry.get("trusted") else "not trusted, drops nothing"
    return (
        f"drop at p >= {entry.get('min_confidence')} if cross-val accuracy >= "
        f"{entry.get('min_cross_val_accuracy')} (it is {accuracy}: {trusted})"
    )


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
            "markup": f"markup no real row of the label has, or {entry.get('echo_words')} "
            "words of the prompt",
            "exact-duplicate": "after normalisation",
            "leakage": f"a run of {entry.get('min_span_words')} words from a real example"
            + (" or a document" if entry.get("documents") else ""),
            "contamination": f"cosine >= {entry.get('cosine')} or "
            f"{entry.get('min_span_words')} shared words",
            "near-duplicate": f"cosine >= {entry.get('cosine')}",
            "label-consistency": f"{entry.get('action')}; the model agrees on "
            + ", ".join(f"{k} {v:.0%}" for k, v in entry.get("agreement_per_label", {}).items()),
            "on-topic": f"the most likely {entry.get('keep_share', 0):.0%} of each label kept",
            "label-fidelity": _judge_setting(entry),
            "surplus": f"at most {entry.get('keep_per_label')} rows per label, "
            "the first in row order",
        }[rule]
        lines.append(f"{rule:<16} {entry['flagged']:>8} {entry['dropped']:>8}  {setting}")
    return "\n".join(lines)
