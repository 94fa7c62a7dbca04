"""The fit margin: how much more likely the generating model finds a row's text when
asked for the row's own label than when asked for any other (noisy-channel scoring, Min
et al., ACL 2022).

For every row and every label, the log-probability of the row's text as the model's
reply to the prompt `prompts/fit-margin.jinja` asks for that label (`Engine.likelihoods`:
a prompt-only pass, nothing decoded). The margin is the own label's minus the best other
label's, in nats over the whole text: above 0, the model reads the text as its own
label's more than any other's. `posterior` is the own label's share of the text's
probability over all labels, as if the labels were equally likely beforehand.

The direction is the one generation took (text given label), so unlike the label check,
which asks the model to name a label, a small model's bias toward one label name does
not enter: every label's prompt scores the same text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from localgen.engines.base import Continuation, Engine
from localgen.planning.prompts import PromptLibrary
from localgen.planning.task import Task

TEMPLATE = "fit-margin"
REPLY_START = '{"text":"'  # a row starts so (planning/schema.py's RowSchema)
BATCH_ROWS = 32  # rows scored per call to the engine (times the labels in prompts)


@dataclass(frozen=True)
class Fit:
    """One row's scores: the log-probability of its text under each label's prompt."""

    label: str
    likelihoods: dict[str, float]

    @property
    def margin(self) -> float:
        own = self.likelihoods[self.label]
        return own - max(v for k, v in self.likelihoods.items() if k != self.label)

    @property
    def posterior(self) -> float:
        top = max(self.likelihoods.values())
        total = sum(math.exp(v - top) for v in self.likelihoods.values())
        return math.exp(self.likelihoods[self.label] - top) / total


class ChannelFit:
    """The fit-margin prompts of one task, one per label."""

    def __init__(self, task: Task, prompts: PromptLibrary | None = None) -> None:
        self.template = (prompts or PromptLibrary()).get(TEMPLATE)
        self.labels = list(task.label_names)
        self.prompts = {
            name: self.template.render(
                context=task.context,
                label=name,
                description=spec.description,
                style=task.generation.style,
            )
            for name, spec in task.labels.items()
        }

    def continuations(self, text: str) -> list[Continuation]:
        """The text after each label's prompt, as a row writes it: JSON-escaped, closed
        by its quote (the text ends there)."""
        reply = json.dumps(text, ensure_ascii=False)[1:]
        return [Continuation(self.prompts[name], REPLY_START, reply) for name in self.labels]

    def score(self, engine: Engine, rows: Sequence[tuple[str, str]]) -> Iterator[Fit]:
        """The fit of each (text, label), in order, BATCH_ROWS rows per engine call."""
        k = len(self.labels)
        for start in range(0, len(rows), BATCH_ROWS):
            batch = rows[start : start + BATCH_ROWS]
            items = [c for text, _ in batch for c in self.continuations(text)]
            scores = engine.likelihoods(items)  # type: ignore[attr-defined]
            for i, (_, label) in enumerate(batch):
                yield Fit(label, dict(zip(self.labels, scores[i * k : (i + 1) * k], strict=True)))
