"""One generated row with its provenance, as the data contract in the design describes.

Columns (in this order): id, text, label, then how the row was made: request_key,
strategy, template, template_hash, attributes (JSON), positive_ids, negative_ids,
intermediate, model, model_path, model_config_hash, engine, backend, temperature, top_p,
max_tokens, seed, attempt, finish_reason, prompt_tokens, completion_tokens,
mean_logprob, created_at (UTC, ISO 8601). The output table adds check_label: the label
the generating model gave the row when asked (`localgen.planning.check`), null when the
check did not run; and fit_margin and fit_posterior: how much more likely the model finds
the text under its own label's prompt than under any other's, and its own label's share
(`localgen.planning.channel`), null where the engine cannot score texts (only vLLM's in
this process can) or the check did not run.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from localgen.artifacts import utc_now
from localgen.data import content_id
from localgen.engines.base import Completion, Engine
from localgen.models.resolve import ModelRef
from localgen.planning.requests import Request

ROW_SCHEMA: dict[str, Any] = {
    "id": pl.Utf8,  # stable content hash of (text, label): equal rows share an id
    "text": pl.Utf8,
    "label": pl.Utf8,
    "request_key": pl.Utf8,  # which planned request produced it (unique within a run)
    "strategy": pl.Utf8,
    "template": pl.Utf8,
    "template_hash": pl.Utf8,
    "attributes": pl.Utf8,  # JSON object of sampled attributes, "{}" when none
    "positive_ids": pl.List(pl.Utf8),  # real examples shown as ones to imitate
    "negative_ids": pl.List(pl.Utf8),  # examples shown as ones to differ from
    "intermediate": pl.Utf8,  # hierarchical: the first-pass summary; null otherwise
    "model": pl.Utf8,
    "model_path": pl.Utf8,
    "model_config_hash": pl.Utf8,
    "engine": pl.Utf8,
    "backend": pl.Utf8,
    "temperature": pl.Float64,
    "top_p": pl.Float64,
    "max_tokens": pl.Int64,
    "seed": pl.Int64,  # RNG seed of the request, as sent to the engine
    "attempt": pl.Int64,  # 0 for the first try, 1.. for retries after an invalid output
    "finish_reason": pl.Utf8,
    "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64,
    # mean log-probability of the completion's tokens under the model (null: the engine
    # returns none): how likely the model finds the row given its label's prompt
    "mean_logprob": pl.Float64,
    "created_at": pl.Utf8,
}

# What the label check stores per row (shards in checks/, joined into the output table).
CHECK_SCHEMA: dict[str, Any] = {
    "request_key": pl.Utf8,
    "check_label": pl.Utf8,
    "fit_margin": pl.Float64,
    "fit_posterior": pl.Float64,
}
OUTPUT_SCHEMA: dict[str, Any] = ROW_SCHEMA | {
    name: kind for name, kind in CHECK_SCHEMA.items() if name != "request_key"
}


def make_row(
    request: Request,
    parsed: dict[str, Any],
    completion: Completion,
    model: ModelRef,
    engine: Engine,
    attempt: int,
) -> dict[str, Any]:
    """A stored row: the validated output plus everything needed to reproduce it."""
    text, label = parsed["text"], parsed["label"]
    return {
        "id": content_id(text, label, "syn-"),
        "text": text,
        "label": label,
        "request_key": request.key,
        "strategy": request.strategy,
        "template": request.template,
        "template_hash": request.template_hash,
        "attributes": json.dumps(request.attributes, sort_keys=True, ensure_ascii=False),
        "positive_ids": list(request.positive_ids),
        "negative_ids": list(request.negative_ids),
        "intermediate": request.intermediate,
        "model": model.name,
        "model_path": model.where,
        "model_config_hash": model.config_hash,
        "engine": engine.name,
        "backend": engine.backend,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.max_tokens,
        "seed": request.seed,
        "attempt": attempt,
        "finish_reason": completion.finish_reason,
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "mean_logprob": None
        if completion.mean_logprob is None
        else round(completion.mean_logprob, 5),
        "created_at": utc_now(),
    }


# First-pass outputs that are not rows (the summaries of the hierarchical strategy).
DRAFT_SCHEMA: dict[str, Any] = {
    "key": pl.Utf8,
    "label": pl.Utf8,
    "text": pl.Utf8,
    "template_hash": pl.Utf8,
    "seed": pl.Int64,
    "attempt": pl.Int64,
    "finish_reason": pl.Utf8,
    "completion_tokens": pl.Int64,
}


def make_draft(
    request: Request, parsed: dict[str, Any], completion: Completion, attempt: int
) -> dict[str, Any]:
    return {
        "key": request.key,
        "label": parsed["label"],
        "text": parsed["text"],
        "template_hash": request.template_hash,
        "seed": request.seed,
        "attempt": attempt,
        "finish_reason": completion.finish_reason,
        "completion_tokens": completion.completion_tokens,
    }


def failure(
    key: str, label: str, attempts: int, finish_reason: str, reason: str, output: str = ""
) -> dict[str, Any]:
    """A request that produced no valid row, as the manifest's `failures` records it."""
    return {
        "key": key,
        "label": label,
        "attempts": attempts,
        "finish_reason": finish_reason,
        "reason": reason,
        "output": output[:200],  # enough to see what went wrong
    }
