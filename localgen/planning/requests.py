"""What a plan is made of: the requests to send, the second-pass requests that wait for
the first pass, and the plan that holds them with its fingerprint.

A `Request` carries everything an engine needs (prompt, schema, sampling settings, seed)
and everything a row records about how it was asked (strategy, template, attributes, the
examples shown). This module does not decide what to ask; `localgen.planning.plan` and
`localgen.planning.strategies` do.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from localgen.planning.fit import PromptFit
from localgen.planning.prompts import Template
from localgen.planning.schema import LabelChoice, RowSchema

SUMMARY_SUFFIX = "/summary"  # key of a hierarchical first-pass request: "<row key>/summary"
# The lists of examples a prompt shows as "not like these", in the order of negative_ids.
NEGATIVES = ("boundary", "rejected", "earlier")


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
    if "examples" in variables:
        negatives = [item for name in NEGATIVES for item in variables.get(name) or ()]
        request = replace(
            request,
            positive_ids=tuple(str(e["id"]) for e in variables["examples"]),
            negative_ids=tuple(str(e["id"]) for e in negatives),
        )
    return replace(request, prompt=prompt)


@dataclass(frozen=True)
class Plan:
    requests: list[Request]  # first pass: rows
    seed: int
    notes: list[str]  # things the user should know (e.g. a label fell back to zero-shot)
    limits: str = ""  # the bound every row gets: characters and tokens
    drafts: list[Request] = field(default_factory=list)  # first pass: summaries, not rows
    followups: list[Followup] = field(default_factory=list)  # second pass: rows

    @property
    def rows(self) -> int:
        """Rows planned (drafts are not rows)."""
        return len(self.requests) + len(self.followups)

    @property
    def row_keys(self) -> list[str]:
        return [r.key for r in self.requests] + [f.key for f in self.followups]

    @property
    def fingerprint(self) -> str:
        """Hash of every prompt, schema and sampling setting: equal plans give equal hashes."""
        h = hashlib.sha256()
        items = [(r, r.prompt) for r in self.requests + self.drafts] + [
            (f.request, [f.template.hash, f.variables, f.earlier]) for f in self.followups
        ]
        for r, prompt in items:
            fields = [r.key, prompt, r.schema.json_schema, r.max_tokens, r.temperature, r.top_p]
            h.update(json.dumps([*fields, r.seed], sort_keys=True).encode())
        return h.hexdigest()[:16]

    def counts(self) -> dict[str, dict[str, int]]:
        """Planned rows per label and strategy."""
        rows = self.requests + [f.request for f in self.followups]
        out: dict[str, dict[str, int]] = {}
        for (label, strategy), n in Counter((r.label, r.strategy) for r in rows).items():
            out.setdefault(label, {})[strategy] = n
        return out
