"""The label check: one request per generated row, asking the generating model which of
the task's labels the row belongs to, with a grammar that admits only those labels.

A row whose answer differs from the label it was written for is one the model itself
does not read as that label; curation's `label-consistency` rule flags or drops it. The
request is greedy (temperature 0), so the answer is the model's most likely label.
"""

from __future__ import annotations

from localgen.planning.prompts import PromptLibrary
from localgen.planning.requests import Request
from localgen.planning.schema import LabelChoice
from localgen.planning.task import Task

TEMPLATE = "label-check"
CHECK_SUFFIX = "/check"  # key of a check request: "<row key>/check"
# The shown text is cut to this many characters: the opening says what a text is about,
# and the check's prompt stays small next to the row's.
SHOWN_CHARS = 2_000


class LabelCheck:
    """Builds the check requests of one task."""

    def __init__(self, task: Task, prompts: PromptLibrary | None = None) -> None:
        self.task = task
        self.template = (prompts or PromptLibrary()).get(TEMPLATE)
        self.labels = [
            {"name": name, "description": spec.description} for name, spec in task.labels.items()
        ]

    def request(self, key: str, text: str, label: str, seed: int) -> Request:
        shown = text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + " […]"
        prompt = self.template.render(context=self.task.context, labels=self.labels, text=shown)
        return Request(
            key=key + CHECK_SUFFIX,
            label=label,
            strategy="label-check",
            template=TEMPLATE,
            template_hash=self.template.hash,
            prompt=prompt,
            schema=LabelChoice(tuple(self.task.label_names), label),
            temperature=0.0,
            top_p=1.0,
            seed=seed,
        )
