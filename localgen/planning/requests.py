"""What a plan is made of: the requests to send, the second-pass requests that wait for
the first pass, and the plan that builds them on demand, a position at a time, with its
fingerprint.

A `Request` carries everything an engine needs (prompt, schema, sampling settings, seed)
and everything a row records about how it was asked (strategy, template, attributes, the
examples shown). This module does not decide what to ask; `localgen.planning.plan` and
`localgen.planning.strategies` do.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import random
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from localgen.planning.fit import PromptFit
from localgen.planning.prompts import Template
from localgen.planning.schema import LabelChoice, RowSchema

SUMMARY_SUFFIX = "/summary"  # key of a hierarchical first-pass request: "<row key>/summary"
# The lists of examples a prompt shows as "not like these", in the order of negative_ids,
# and those it shows to write from, in the order of positive_ids.
NEGATIVES = ("boundary", "rejected", "earlier")
POSITIVES = ("source", "document", "examples")
# What a second-pass prompt shows in place of the first pass's outputs, when it is printed
# or measured before they exist.
PLACEHOLDER_SUMMARY = "<the summary written in the first pass>"
PLACEHOLDER_EARLIER = [("-", "<a row generated in the first pass>")]


@dataclass(frozen=True)
class Rejected:
    """A text the user does not want more of; `label` None means: for every label."""

    id: str
    text: str
    label: str | None


@dataclass(frozen=True)
class Request:
    """Everything needed to ask for one output, and to record how it was asked."""

    key: str  # stable id of the request within its plan, e.g. "billing-000007"
    label: str
    strategy: str
    template: str
    template_hash: str
    prompt: str
    schema: RowSchema | LabelChoice  # a row, or the answer of a label check
    temperature: float
    top_p: float
    seed: int  # the RNG seed of this request: sampling and example choice

    @property
    def max_tokens(self) -> int:
        return self.schema.max_tokens

    attributes: dict[str, str] = field(default_factory=dict)
    positive_ids: tuple[str, ...] = ()
    negative_ids: tuple[str, ...] = ()
    intermediate: str | None = None  # hierarchical: the summary the text was written from
    # Alternatives per generated token the engine should return with their
    # log-probabilities (Completion.top_logprobs); 0: none. Labelling documents asks for
    # them to read every label's probability from one constrained answer.
    top_logprobs: int = 0


@dataclass(frozen=True)
class Followup:
    """A second-pass request: its prompt needs outputs of the first pass."""

    request: Request  # complete but for the prompt and what `complete` adds
    template: Template
    variables: dict[str, Any]  # the template's variables, but for the first-pass outputs
    summary_key: str | None = None  # hierarchical: the draft whose summary it expands
    earlier: int = 0  # contrastive: rows of the label already generated, to show
    fit: PromptFit | None = field(default=None, compare=False)  # the plan's, if it had one

    @property
    def key(self) -> str:
        return self.request.key

    def complete(self, summary: str | None, earlier: list[tuple[str, str]]) -> Request:
        """The request, given the summary and the (id, text) of first-pass rows of its label."""
        shown = earlier
        if len(earlier) > self.earlier:
            shown = random.Random(self.request.seed).sample(earlier, self.earlier)
        variables = self.variables | {
            "summary": summary or "",
            "earlier": [{"id": i, "text": text} for i, text in shown],
        }
        request = replace(self.request, intermediate=summary)
        return render(self.template, request, variables, self.fit)


def render(
    template: Template, request: Request, variables: dict[str, Any], fit: PromptFit | None
) -> Request:
    """The request with its prompt, and the ids of the examples the prompt shows (a prompt
    fitted to the context may show fewer than were picked)."""
    if fit is None:
        prompt = template.render(**variables)
    else:
        assert isinstance(request.schema, RowSchema), "only rows are fitted"
        prompt, variables, schema = fit.render(
            template, variables, request.schema, request.strategy
        )
        request = replace(request, schema=schema)
    if any(name in variables for name in POSITIVES):
        positives = [item for name in POSITIVES for item in variables.get(name) or ()]
        negatives = [item for name in NEGATIVES for item in variables.get(name) or ()]
        request = replace(
            request,
            positive_ids=tuple(str(e["id"]) for e in positives),
            negative_ids=tuple(str(e["id"]) for e in negatives),
        )
    return replace(request, prompt=prompt)


@dataclass
class Step:
    """What one planned row adds to the plan."""

    requests: list[Request] = field(default_factory=list)  # first pass: rows
    drafts: list[Request] = field(default_factory=list)  # first pass: summaries
    followups: list[Followup] = field(default_factory=list)  # second pass: rows


@dataclass(frozen=True)
class Block:
    """A label's rows of one strategy: plan positions `start` to `start + count`."""

    label: str
    strategy: str
    start: int  # plan position of its first row: labels in task order, then blocks
    index: int  # the label's row number of its first row (the number in its key)
    count: int
    first_followup: int  # the block's rows from this one on are asked in the second pass

    @property
    def stop(self) -> int:
        return self.start + self.count

    @property
    def followups(self) -> int:
        return self.count - self.first_followup

    @property
    def drafts(self) -> int:
        return self.count if self.strategy == "hierarchical" else 0

    def key(self, position: int) -> str:
        return f"{self.label}-{self.index + position - self.start:06d}"


def request_seeds(seed: int, start: int, n: int) -> list[int]:
    """The seeds of plan positions start .. start + n: one stream (PCG64) per plan seed,
    entered at any position without drawing the ones before, so any request can be built
    alone and a window of a billion-row plan costs what its own rows cost."""
    stream = np.random.PCG64(seed)
    stream.advance(start)
    return (stream.random_raw(n) >> np.uint64(33)).tolist()  # 31 bits


SEEDS_AT_ONCE = 4_096  # seeds drawn at once while walking the plan


class Plan:
    """The requests of a run, built on demand from their position in the plan and never
    all held at once: a plan of a billion rows costs what its counts and the requests
    asked for cost. Positions run over the labels in task order, each label's rows in
    blocks, one per strategy (`Block`); `make(position, block, seed)` builds a position's
    `Step`. A definition holds what the requests are built from (task, seed, data, blocks),
    so that equal definitions give equal plans; `definitions` has one per round of rows
    (the plan as first asked for, then each round `more` added): (the blocks the plan had
    then, the definition)."""

    def __init__(
        self,
        *,
        seed: int,
        notes: list[str],
        limits: str,
        blocks: list[Block],
        make: Callable[[int, Block, int], Step],
        definitions: list[tuple[int, dict[str, Any]]],
        fit: PromptFit | None = None,
        more: list[dict[str, int]] | None = None,
    ) -> None:
        self.seed = seed
        self.notes = notes  # things the user should know (e.g. a label fell back to zero-shot)
        self.limits = limits  # the bound every row gets: characters and tokens
        self.blocks = [b for b in blocks if b.count]
        self.fit = fit  # measures every prompt built against the context, when given
        self.more = more or []  # the rounds of rows per label added to the first plan
        self._make = make
        self._definitions = definitions
        self._starts = [b.start for b in self.blocks]
        self._fingerprints: list[str] | None = None

    # Counts, known without building a request.
    @property
    def rows(self) -> int:
        """Rows planned (drafts are not rows)."""
        return sum(b.count for b in self.blocks)

    @property
    def second_pass_rows(self) -> int:
        return sum(b.followups for b in self.blocks)

    @property
    def first_pass_rows(self) -> int:
        return self.rows - self.second_pass_rows

    @property
    def summaries(self) -> int:
        return sum(b.drafts for b in self.blocks)

    def counts(self) -> dict[str, dict[str, int]]:
        """Planned rows per label and strategy."""
        out: dict[str, dict[str, int]] = {}
        for b in self.blocks:
            by_strategy = out.setdefault(b.label, {})
            by_strategy[b.strategy] = by_strategy.get(b.strategy, 0) + b.count
        return out

    def row_keys(self) -> Iterator[str]:
        for b in self.blocks:
            for position in range(b.start, b.stop):
                yield b.key(position)

    def earlier_keys(self, per_label: int) -> set[str]:
        """The keys of each label's first `per_label` first-pass rows: the rows a
        contrastive second-pass prompt may show as already written."""
        keys: set[str] = set()
        taken: Counter[str] = Counter()
        for b in self.blocks:
            n = min(b.first_followup, per_label - taken[b.label])
            keys.update(b.key(b.start + i) for i in range(n))
            taken[b.label] += n
        return keys

    # Requests, built on demand.
    def step(self, position: int) -> Step:
        block = self.blocks[bisect.bisect_right(self._starts, position) - 1]
        return self._make(position, block, request_seeds(self.seed, position, 1)[0])

    def steps(self, start: int = 0, stop: int | None = None) -> Iterator[Step]:
        """The step of every position from `start` to `stop`, in plan order."""
        for position, block, seed in self._walk(start, self.rows if stop is None else stop):
            yield self._make(position, block, seed)

    def _walk(self, start: int, stop: int) -> Iterator[tuple[int, Block, int]]:
        for block in self.blocks:
            lo, hi = max(start, block.start), min(stop, block.stop)
            for first in range(lo, hi, SEEDS_AT_ONCE):
                seeds = request_seeds(self.seed, first, min(SEEDS_AT_ONCE, hi - first))
                for i, seed in enumerate(seeds):
                    yield first + i, block, seed

    def first_pass(
        self, done: Container[str] = (), drafted: Container[str] = ()
    ) -> Iterator[Request]:
        """First-pass requests in plan order, rows and summaries, but for the rows in
        `done` and the summaries in `drafted` (or of a row in `done`); a position with
        nothing left to ask is not built."""
        for position, block, seed in self._walk(0, self.rows):
            key = block.key(position)
            if key in done:
                continue
            row = position - block.start < block.first_followup
            draft = block.drafts > 0 and key + SUMMARY_SUFFIX not in drafted
            if row or draft:
                step = self._make(position, block, seed)
                yield from step.requests if row else ()
                yield from step.drafts if draft else ()

    def second_pass(self, done: Container[str] = ()) -> Iterator[Followup]:
        """Second-pass requests not in `done`, in plan order (their prompts wait for the
        first pass's outputs: `Followup.complete`)."""
        for block in self.blocks:
            for position, _, seed in self._walk(block.start + block.first_followup, block.stop):
                if block.key(position) not in done:
                    yield from self._make(position, block, seed).followups

    @property
    def requests(self) -> list[Request]:
        """Every first-pass row, all built now: for small plans and tests."""
        return [r for step in self.steps() for r in step.requests]

    @property
    def drafts(self) -> list[Request]:
        """Every summary, all built now: for small plans and tests."""
        return [r for step in self.steps() for r in step.drafts]

    @property
    def followups(self) -> list[Followup]:
        """Every second-pass request, all built now: for small plans and tests."""
        return [f for step in self.steps() for f in step.followups]

    # What identifies the plan, and what measuring its prompts found.
    def probes(self, blocks: int | None = None) -> list[int]:
        """Positions that show every kind of request: each block's first row, its first
        second-pass row, and its last (of the first `blocks` blocks, else of all)."""
        found: set[int] = set()
        for b in self.blocks[:blocks]:
            found.update((b.start, b.stop - 1, b.start + min(b.first_followup, b.count - 1)))
        return sorted(found)

    def check(self) -> None:
        """Build the requests at the probes, every kind the plan has: a prompt that cannot
        be built (one that cannot fit the context) fails now, not in the middle of a run."""
        _ = self.fingerprint

    @property
    def fingerprint(self) -> str:
        """Hash of what the plan is built from and of its requests at the probes (prompt,
        schema, sampling settings, seed): equal plans give equal hashes, and a change in
        how a prompt is written changes it."""
        return self.fingerprints[-1]

    @property
    def fingerprints(self) -> list[str]:
        """The fingerprint of the plan as first asked for, then of the plan after each
        round `more` added: a run stored under any of them is a prefix of this plan."""
        if self._fingerprints is None:
            self._fingerprints = [self._hash(*d) for d in self._definitions]
        return self._fingerprints

    def _hash(self, blocks: int, definition: dict[str, Any]) -> str:
        h = hashlib.sha256(json.dumps(definition, sort_keys=True).encode())
        with self.unmeasured():
            for position in self.probes(blocks):
                step = self.step(position)
                items = [(r, r.prompt) for r in step.requests + step.drafts] + [
                    (f.request, [f.template.hash, f.variables, f.earlier]) for f in step.followups
                ]
                for r, prompt in items:
                    fields: list[Any] = [r.key, prompt, r.schema.json_schema]
                    fields += [r.max_tokens, r.temperature, r.top_p, r.seed]
                    h.update(json.dumps(fields, sort_keys=True).encode())
        return h.hexdigest()[:16]

    @contextmanager
    def unmeasured(self) -> Iterator[None]:
        """Requests built inside are not counted in `measured_notes`."""
        if self.fit is None:
            yield
            return
        saved = self.fit.tally()
        try:
            yield
        finally:
            self.fit.restore(saved)

    def measured_notes(self) -> list[str]:
        """What fitting the prompts built so far to the context found."""
        return [] if self.fit is None else self.fit.notes()

    def sample_notes(self, limit: int = 2_000) -> list[str]:
        """What fitting the prompts of every position, or of `limit` evenly spaced ones
        in a larger plan, to the context finds; not counted in `measured_notes`."""
        if self.fit is None:
            return []
        with self.unmeasured():
            self.fit.restore(({}, {}, None))
            positions: Iterable[int] = range(self.rows)
            if self.rows > limit:
                positions = sorted({i * self.rows // limit for i in range(limit)})
            for position in positions:
                for followup in self.step(position).followups:
                    followup.complete(PLACEHOLDER_SUMMARY, PLACEHOLDER_EARLIER)
            notes = self.fit.notes()
        if notes and self.rows > limit:
            notes.append(f"prompts measured: {limit} evenly spaced of the plan's {self.rows}")
        return notes
