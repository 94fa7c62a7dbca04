"""The fit margin's logic (localgen/planning/channel.py) with a stand-in engine: which
texts it scores under which prompts, and the margin and posterior from the scores."""

import json
import math
from pathlib import Path

import pytest

from localgen.engines.base import Continuation
from localgen.planning.channel import REPLY_START, ChannelFit, Fit
from localgen.planning.task import load_task
from tests.helpers import EXAMPLE_TASK


class Scorer:
    """Scores a text by how often its prompt's label name occurs in it, and records
    what it was asked."""

    def __init__(self) -> None:
        self.calls: list[list[Continuation]] = []

    def likelihoods(self, items: list[Continuation]) -> list[float]:
        self.calls.append(items)
        return [-10.0 + 3.0 * item.text.count(item.prompt.split('"')[1]) for item in items]


def test_margin_and_posterior() -> None:
    fit = Fit("a", {"a": -10.0, "b": -12.0, "c": -11.0})
    assert fit.margin == pytest.approx(1.0)
    total = math.exp(-10) + math.exp(-12) + math.exp(-11)
    assert fit.posterior == pytest.approx(math.exp(-10) / total)
    worse = Fit("b", fit.likelihoods)
    assert worse.margin == pytest.approx(-2.0) and worse.posterior < 0.5


def test_every_label_scores_the_same_escaped_text() -> None:
    task = load_task(EXAMPLE_TASK)
    channel = ChannelFit(task)
    text = 'A "quoted"\nline'
    items = channel.continuations(text)
    assert [i.prompt for i in items] == [channel.prompts[name] for name in task.label_names]
    assert len({i.prompt for i in items}) == len(task.label_names)
    for name, item in zip(task.label_names, items, strict=True):
        assert f'"{name}"' in item.prompt and task.labels[name].description in item.prompt
    assert {i.text for i in items} == {json.dumps(text)[1:]}  # escaped, closed by its quote
    assert {i.start for i in items} == {REPLY_START}


def test_rows_are_scored_in_batches_and_in_order(tmp_path: Path) -> None:
    task = load_task(EXAMPLE_TASK)
    first, second = task.label_names[:2]
    rows = [(f"about {first} and {first}", first), (f"about {second}", first)] * 20
    engine = Scorer()
    fits = list(ChannelFit(task).score(engine, rows))  # type: ignore[arg-type]
    assert len(engine.calls) == 2  # 40 rows, 32 per call
    assert all(len(call) % len(task.label_names) == 0 for call in engine.calls)
    assert [f.label for f in fits] == [label for _, label in rows]
    assert fits[0].margin == pytest.approx(6.0)  # its own label named twice
    assert fits[1].margin == pytest.approx(-3.0)  # another label's name, not its own
