"""Prompts measured against the context at plan time: examples dropped or cut until they fit,
the row's budget what the context has left, and the ids recorded those the prompt shows."""

from pathlib import Path

import polars as pl
import pytest

from localgen.data import LabeledData, read_labeled
from localgen.errors import TaskError
from localgen.planning.fit import CUT_MARK, PromptFit
from localgen.planning.plan import PlanSpec, build_plan
from localgen.planning.task import load_task
from tests.helpers import BagOfWords


def words(text: str) -> int:
    """A stand-in tokenizer: one token per word."""
    return len(text.split())


def _long_seed(tmp_path: Path, words_each: int) -> LabeledData:
    rows = [
        (f"example {i} of {label}: " + " ".join([f"{label}{i}"] * words_each), label)
        for label in ("billing", "bug")
        for i in range(4)
    ]
    path = tmp_path / "long.csv"
    pl.DataFrame({"text": [t for t, _ in rows], "label": [lab for _, lab in rows]}).write_csv(path)
    return read_labeled(path)


def test_prompts_that_fit_are_left_alone(task_file: Path, seed_csv: Path) -> None:
    data = read_labeled(seed_csv, "body", "cls")
    task = load_task(task_file)
    plain = build_plan(task, PlanSpec(strategy="few-shot", seed_data=data))
    fit = PromptFit(words, context=8192)
    fitted = build_plan(task, PlanSpec(strategy="few-shot", seed_data=data, fit=fit))
    assert [r.prompt for r in fitted.requests] == [r.prompt for r in plain.requests]
    assert all(r.schema.whole for r in fitted.requests)
    assert fit.shortened == {} and fitted.sample_notes() == []


def test_long_examples_are_dropped_then_cut_to_fit(task_file: Path, tmp_path: Path) -> None:
    task = load_task(task_file)  # 12 words: rows of 84 characters, 367 tokens at most
    data = _long_seed(tmp_path, words_each=700)  # one example alone is more than fits
    context = 1000
    fit = PromptFit(words, context=context)
    plan = build_plan(task, PlanSpec(strategy="few-shot", seed_data=data, fit=fit))
    texts = dict(zip(data.frame["id"], data.frame["text"], strict=True))
    requests = plan.requests  # built now, each measured once
    for r in requests:
        assert words(r.prompt) + r.max_tokens <= context
        assert len(r.positive_ids) == 1  # two of three examples dropped
        shown = texts[r.positive_ids[0]]
        assert shown not in r.prompt and shown[:40] in r.prompt and CUT_MARK in r.prompt
    assert fit.shortened == {"few-shot": len(requests)} == {"few-shot": 6}
    assert plan.measured_notes() == plan.sample_notes()  # the sample is the whole plan
    assert any("6 few-shot prompts shortened" in note for note in plan.sample_notes())


def test_contrastive_negatives_recorded_are_the_ones_shown(task_file: Path, tmp_path: Path) -> None:
    task = load_task(task_file)
    data = _long_seed(tmp_path, words_each=60)
    fit = PromptFit(words, context=800)
    plan = build_plan(
        task, PlanSpec(strategy="contrastive", seed_data=data, fit=fit, encoder=BagOfWords())
    )
    texts = dict(zip(data.frame["id"], data.frame["text"], strict=True))
    requests = plan.requests
    assert fit.shortened  # the boundary examples went first
    for r in requests:
        for row_id in r.positive_ids + r.negative_ids:
            assert texts[row_id][:30] in r.prompt
        assert words(r.prompt) + r.max_tokens <= 800


def test_a_row_longer_than_half_the_context_gets_what_is_left(write_task) -> None:
    task = load_task(write_task(_task_with("max_words = 12\nmax_chars = 4000")))
    fit = PromptFit(words, context=4096)
    plan = build_plan(task, PlanSpec(fit=fit))
    for r in plan.requests:
        assert r.schema.token_bound > 16000 and not r.schema.whole
        assert r.max_tokens == 4096 - words(r.prompt) - 32
    assert any("fewer than the longest row could take" in note for note in plan.sample_notes())


def test_a_prompt_that_cannot_fit_is_a_clear_error(write_task) -> None:
    task = load_task(write_task(_task_with("max_words = 12", context="word " * 900)))
    with pytest.raises(TaskError, match="raise --max-model-len"):
        build_plan(task, PlanSpec(fit=PromptFit(words, context=1000)))


def _task_with(generation: str, context: str = "Messages to a help desk.") -> str:
    return f"""
name = "tiny"
context = "{context}"
[generation]
count = 2
{generation}
[labels.billing]
description = "Invoices."
[labels.bug]
description = "Broken things."
"""


def test_the_language_is_asked_for_in_every_prompt(write_task) -> None:
    task = load_task(write_task('language = "de"\n' + _task_with("max_words = 12")))
    assert all(
        "Write the text in German, not in English." in r.prompt for r in build_plan(task).requests
    )
    french = build_plan(task, PlanSpec(language="French")).requests
    assert all("<the text in French>" in r.prompt for r in french)


def test_an_unknown_language_code_is_a_task_error(write_task) -> None:
    with pytest.raises(TaskError, match="unknown language code 'qq'"):
        load_task(write_task('language = "qq"\n' + _task_with("max_words = 12")))
