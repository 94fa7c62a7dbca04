"""A fake engine for unit tests and for measuring localgen's own overhead: no model.

It answers each request with a schema-valid row built from the request's seed (and a
mean log-probability drawn from it), and a label check with the row's own label, so runs
are reproducible. `FakeEngine.enqueue(key, raw)` queues a raw answer for a request key
(consumed once), which is how tests plant invalid outputs and failures. With
`tokens_per_s` (env LOCALGEN_FAKE_TOKENS_PER_S for `--engine fake`) it takes as long as
an engine of that speed would, so kill tests and overhead benchmarks have time to act.
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Sequence

from localgen.engines.base import Completion, Continuation, Feed
from localgen.planning.requests import Request
from localgen.planning.schema import LabelChoice

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


# Requests a fake engine keeps for tests, in all: enough for any test, few enough that a
# scale benchmark measures localgen and not this bookkeeping.
RECORDED = 1_000


def _inner(label: str) -> str:
    """A label as written between the quotes of JSON."""
    return json.dumps(label, ensure_ascii=False)[1:-1]


def _alternatives(
    r: Request, raw: str, rng: random.Random
) -> tuple[tuple[tuple[str, float], ...], ...] | None:
    """A label answer as three tokens (the opening, the label, the closing), with every
    label an alternative at the second: the answer's own the most likely."""
    if not isinstance(r.schema, LabelChoice) or r.schema.parse(raw)[0] is None:
        return None
    answer = json.loads(raw)["label"]
    chosen = -rng.uniform(0.01, 1.0)
    others = sorted((chosen - rng.uniform(0.1, 4.0) for _ in r.schema.labels), reverse=True)
    step = [(_inner(answer), chosen)] + [
        (_inner(name), lp)
        for name, lp in zip(r.schema.labels, others, strict=True)
        if name != answer
    ]
    return ((('{"label":"', 0.0),), tuple(step[: r.top_logprobs + 1]), (('"}', 0.0),))


class FakeEngine:
    name = "fake"
    context: int | None = None
    backend = "none"

    def __init__(self, tokens_per_s: float | None = None) -> None:
        self.tokens_per_s = tokens_per_s
        self.queued: dict[str, deque[str]] = defaultdict(deque)
        self.calls: list[list[str]] = []  # keys taken by each generate() call that took any...
        self.recorded = 0  # ... up to RECORDED keys in all, so a large run stays flat
        self.last_requests: list[Request] = []  # the requests of the last call (as many)
        self.most_held = 0  # the most requests held at once, taken and not yet answered

    def enqueue(self, key: str, raw: str) -> None:
        self.queued[key].append(raw)

    def generate(self, requests: Iterable[Request] | Feed) -> Iterator[Completion]:
        """Take requests as a batched engine does (up to the feed's room), answer the
        oldest, take more."""
        feed = Feed.of(requests)
        keys: list[str] = []
        self.last_requests = []
        held: deque[Request] = deque()
        while True:
            for r in feed.take(feed.room(len(held))):
                held.append(r)
                if self.recorded < RECORDED:
                    if not keys:
                        self.calls.append(keys)
                    keys.append(r.key)
                    self.last_requests.append(r)
                    self.recorded += 1
            if not held:
                return
            self.most_held = max(self.most_held, len(held))
            yield self._answer(held.popleft())

    def _answer(self, r: Request) -> Completion:
        rng = random.Random(r.seed)
        if self.queued.get(r.key):
            raw = self.queued[r.key].popleft()
        elif isinstance(r.schema, LabelChoice):  # a label check agrees with the row
            labels = r.schema.labels
            label = r.label if r.label in labels else rng.choice(labels)  # a document: any
            raw = json.dumps({"label": label}, ensure_ascii=False, separators=(",", ":"))
        else:
            words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 12))]
            text = " ".join(words).capitalize()[: r.schema.max_chars]
            raw = json.dumps(
                {"text": text, "label": r.label}, ensure_ascii=False, separators=(",", ":")
            )
        completion = Completion(
            key=r.key,
            text=raw,
            finish_reason="stop",
            prompt_tokens=len(r.prompt.split()),
            completion_tokens=len(raw.split()),
            mean_logprob=-round(rng.uniform(0.5, 3.0), 4),
            top_logprobs=_alternatives(r, raw, rng) if r.top_logprobs else None,
        )
        if self.tokens_per_s:
            time.sleep(completion.completion_tokens / self.tokens_per_s)
        return completion

    def likelihoods(self, items: Sequence[Continuation]) -> list[float]:
        """A text's log-probability after a prompt: -1 per word, +2 for each word it
        shares with the prompt's category line (`Category "<label>": ...`), so a text
        that names its label's words fits that label."""
        scores = []
        for item in items:
            line = next((x for x in item.prompt.splitlines() if x.startswith("Category")), "")
            shared = set(line.lower().replace('"', " ").split()) - {"category"}
            words = item.text.lower().replace('"', " ").split()
            scores.append(-len(words) + 2.0 * sum(w in shared for w in words))
        return scores

    def close(self) -> None:
        pass
