"""A fake engine for unit tests and for measuring localgen's own overhead: no model.

It answers each request with a schema-valid row built from the request's seed, so runs
are reproducible. `FakeEngine.enqueue(key, raw)` queues a raw answer for a request key
(consumed once), which is how tests plant invalid outputs and failures.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict, deque
from collections.abc import Iterator, Sequence

from localgen.engines import Completion
from localgen.plan import Request

_WORDS = (
    "please",
    "invoice",
    "account",
    "error",
    "help",
    "order",
    "update",
    "login",
    "refund",
    "issue",
    "team",
    "today",
    "again",
    "report",
    "access",
    "thanks",
)


class FakeEngine:
    name = "fake"
    backend = "none"

    def __init__(self) -> None:
        self.queued: dict[str, deque[str]] = defaultdict(deque)
        self.calls: list[list[str]] = []  # keys of each generate() call, for tests

    def enqueue(self, key: str, raw: str) -> None:
        self.queued[key].append(raw)

    def generate(self, requests: Sequence[Request]) -> Iterator[Completion]:
        self.calls.append([r.key for r in requests])
        for r in requests:
            if self.queued.get(r.key):
                raw = self.queued[r.key].popleft()
            else:
                rng = random.Random(r.seed)
                words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 12))]
                text = " ".join(words).capitalize()[: r.schema.max_chars]
                raw = json.dumps({"text": text, "label": r.label}, separators=(",", ":"))
            yield Completion(
                key=r.key,
                text=raw,
                finish_reason="stop",
                prompt_tokens=len(r.prompt.split()),
                completion_tokens=len(raw.split()),
            )

    def close(self) -> None:
        pass
