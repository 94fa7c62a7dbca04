"""The feed engines take requests from: bounded in flight, retries first, never done
while a retry may still come back."""

from __future__ import annotations

from pathlib import Path

import pytest

from localgen.engines.base import Feed
from localgen.engines.fake import FakeEngine
from localgen.planning.plan import PlanSpec, build_plan
from localgen.planning.task import load_task

TASK = Path(__file__).resolve().parents[2] / "examples" / "support-tickets" / "task.toml"


def _requests(n: int) -> list:  # type: ignore[type-arg]
    plan = build_plan(load_task(TASK), PlanSpec(seed=0, count=n, strategy=["zero-shot"]))
    return list(plan.first_pass(set(), set()))


def test_a_feed_gives_put_back_requests_first_and_respects_its_room() -> None:
    requests = _requests(2)  # 8 requests: 2 per label
    feed = Feed(requests, in_flight=3)
    assert feed.room(0) == 3 and feed.room(2) == 1 and feed.room(5) == 0
    first = feed.take(feed.room(0))
    assert [r.key for r in first] == [r.key for r in requests[:3]]
    assert feed.answered(first[0].key) is first[0]
    with pytest.raises(KeyError):  # answered once
        feed.answered(first[0].key)
    feed.put_back(first[0])
    assert feed.take(2) == [first[0], requests[3]]
    assert len(feed.take(None)) == 4 and feed.take(None) == []
    feed.put_back(requests[0])  # empty, then not: a retry after the plan ran out
    assert feed.take(None) == [requests[0]]
    assert Feed.of(requests).in_flight == len(requests) and Feed.of(feed) is feed
    with pytest.raises(ValueError):
        Feed(requests, in_flight=0)


def test_an_engine_tops_up_as_answers_come_back_and_takes_retries_late() -> None:
    requests = _requests(5)  # 20 requests
    engine, feed = FakeEngine(), Feed(requests, in_flight=4)
    answered = []
    for completion in engine.generate(feed):
        request = feed.answered(completion.key)
        answered.append(request.key)
        if request.key == requests[-1].key and answered.count(request.key) == 1:
            feed.put_back(request)  # the last answer asks for one more: the engine waits
    assert engine.most_held == 4
    assert answered == [r.key for r in requests] + [requests[-1].key]
