"""How a document is put to the model, and how its answer becomes a probability per label.

One request per document: the task's context, its labels with their descriptions and a
few real examples of each come first, the same for every document, so vLLM's prefix
cache computes them once; the document comes last. The answer is `{"label": ...}`,
constrained to the task's labels (`LabelChoice`), greedy. The engine returns the most
likely alternatives at every generated token (`Request.top_logprobs`); where the answer
branches between labels, the alternatives' probabilities give every label its share
(`label_probabilities`). Examples and documents are cut to fit the context, measured with
the model's tokenizer where there is one. This module does not run the engine.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from localgen.data import LabeledData
from localgen.errors import TaskError
from localgen.planning.fit import CHAT_MARGIN, CUT_MARK, cut
from localgen.planning.prompts import PromptLibrary
from localgen.planning.requests import Request, request_seeds
from localgen.planning.schema import LabelChoice
from localgen.planning.task import Task

TEMPLATE = "label-document"
STRATEGY = "label-document"
EXAMPLE_CHARS = 400  # a shown real example is cut to this many characters
# The examples may take at most this share of the context: the document needs the rest.
EXAMPLES_SHARE = 0.5
# Without a tokenizer (a remote server) a document is cut to this many characters.
UNMEASURED_CHARS = 8_000
ALTERNATIVES = 20  # per generated token: vLLM's default most (max_logprobs)


def _inner(label: str) -> str:
    """A label as written between the quotes of compact JSON."""
    return json.dumps(label, ensure_ascii=False)[1:-1]


@dataclass(frozen=True)
class Asked:
    """A document's request, and whether the document had to be cut to fit."""

    request: Request
    cut: bool


class DocumentPrompt:
    """Builds the labelling request of every document of one task."""

    def __init__(
        self,
        task: Task,
        seed_data: LabeledData | None,
        per_label: int,
        seed: int,
        context: int | None,
        count: Callable[[str], int] | None,
        prompts: PromptLibrary | None = None,
    ) -> None:
        self.task = task
        self.seed = seed
        self.labels = tuple(task.label_names)
        self.template = (prompts or PromptLibrary()).get(TEMPLATE)
        self.schema = LabelChoice(self.labels, "")
        self.count = count
        self.context = context
        self.examples = _examples(seed_data, self.labels, per_label, seed)
        while self._too_long() and self.examples:
            self.examples = self.examples[:-1]  # the last label's last example first
        base = self._render("")
        if count is not None and context is not None:
            self.document_tokens = context - count(base) - self.schema.max_tokens - CHAT_MARGIN
            if self.document_tokens < 16:
                raise TaskError(
                    f"the labelling prompt takes {count(base)} tokens without its document, "
                    f"and the context holds {context}: shorten the task's context and "
                    "descriptions or raise --max-model-len"
                )
        # What every request shares: changing it changes the answers, so the run's
        # fingerprint includes it.
        self.prefix_hash = hashlib.sha256(base.encode()).hexdigest()[:16]

    @property
    def example_ids(self) -> list[str]:
        return [str(e["id"]) for e in self.examples]

    def _render(self, text: str) -> str:
        labels = [{"name": n, "description": s.description} for n, s in self.task.labels.items()]
        return self.template.render(
            context=self.task.context, labels=labels, examples=self.examples, text=text
        )

    def _too_long(self) -> bool:
        if self.count is None or self.context is None:
            return False
        return self.count(self._render("")) > self.context * EXAMPLES_SHARE

    def _fitted(self, text: str) -> tuple[str, bool]:
        """The document as shown: whole, or cut to the tokens the context leaves it."""
        if self.count is None or self.context is None:
            shown = cut(text, UNMEASURED_CHARS)
            return shown, shown != text

        def tokens(shown: str) -> int:  # as the template shows it: every line indented
            return self.count(shown.replace("\n", "\n  "))  # type: ignore[misc]

        if tokens(text) <= self.document_tokens:
            return text, False
        lo, hi = 0, len(text)  # the most characters that fit, by bisection
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if tokens(text[:mid] + CUT_MARK) <= self.document_tokens:
                lo = mid
            else:
                hi = mid - 1
        return text[:lo].rstrip() + CUT_MARK, True

    def ask(self, key: str, text: str, row: int) -> Asked:
        """The request for the document at `row` of the input."""
        shown, cut = self._fitted(text)
        request = Request(
            key=key,
            label="",
            strategy=STRATEGY,
            template=TEMPLATE,
            template_hash=self.template.hash,
            prompt=self._render(shown),
            schema=self.schema,
            temperature=0.0,  # the model's most likely label
            top_p=1.0,
            seed=request_seeds(self.seed, row, 1)[0],  # greedy: only an engine's fake reads it
            positive_ids=tuple(self.example_ids),
            top_logprobs=ALTERNATIVES,
        )
        return Asked(request, cut)


def _examples(
    seed_data: LabeledData | None, labels: Sequence[str], per_label: int, seed: int
) -> list[dict[str, str]]:
    """`per_label` real rows of each label, drawn with `seed`, cut to EXAMPLE_CHARS, in
    label order: the first of each label, then the second of each, and so on, so that
    dropping from the end keeps every label shown."""
    if seed_data is None or per_label <= 0:
        return []
    groups = seed_data.by_label()
    drawn: dict[str, list[dict[str, str]]] = {}
    for label in labels:
        rows = list(groups[label].iter_rows(named=True)) if label in groups else []
        picked = random.Random(f"{seed}:{label}").sample(rows, min(per_label, len(rows)))
        drawn[label] = [
            {"id": r["id"], "label": label, "text": cut(r["text"], EXAMPLE_CHARS)} for r in picked
        ]
    return [drawn[label][i] for i in range(per_label) for label in labels if i < len(drawn[label])]


def label_probabilities(
    steps: Sequence[Sequence[tuple[str, float]]] | None, labels: Sequence[str]
) -> dict[str, float] | None:
    """Every label's probability from a constrained answer's tokens (the sampled one first
    at each step, then the alternatives, as (text, log-probability)), normalised over the
    labels; None when the answer names no label or the engine gave no alternatives.

    Walking the answer `{"label":"<label>"}` token by token: an alternative that would
    have led to some of the labels still possible (and not to all of them) gives each of
    those its probability (the path so far times the alternative's), shared equally where
    it leads to several; the sampled token continues the path, and once one label is left
    it takes what the path has. A label the engine listed no alternative for gets 0."""
    if not steps:
        return None
    full = {label: '{"label":"' + _inner(label) + '"}' for label in labels}

    def leads_to(text: str, among: Sequence[str]) -> list[str]:
        return [n for n in among if full[n].startswith(text) or text.startswith(full[n])]

    mass = dict.fromkeys(labels, 0.0)
    path, path_logprob = "", 0.0
    alive = list(labels)
    for step in steps:
        if not step:
            return None
        for token, logprob in step[1:]:
            reached = leads_to(path + token, alive)
            if reached and len(reached) < len(alive) and logprob > -math.inf:
                share = math.exp(path_logprob + logprob) / len(reached)
                for name in reached:
                    mass[name] += share
        token, logprob = step[0]
        path += token
        path_logprob += logprob
        alive = leads_to(path, alive)
        if len(alive) <= 1:
            break
    if len(alive) != 1:
        return None
    mass[alive[0]] += math.exp(path_logprob)
    total = sum(mass.values())
    if not total > 0:  # every probability on the path underflowed
        return None
    return {name: m / total for name, m in mass.items()}
