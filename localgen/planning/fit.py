"""Prompts that fit the context: every prompt is measured in tokens when it is rendered.

The engine holds `context` tokens: the prompt plus the row. A row is given the tokens it
can never exceed (`RowSchema.token_bound`) or, where that is more than half the context,
half the context at least; the prompt gets the rest. A prompt that does not fit loses
shown examples, the least close first (rows written earlier, then the boundary examples,
then positives beyond the first), and then has its longest shown texts cut, until it
fits. The row's budget is then what the context has left, and the schema records it
when that is less than the bound (a row cut off there is a failed attempt, retried).

Counting is the model's own tokenizer (`tokenizers`, no model weights loaded). Without
one (a remote server, the fake engine) prompts are not measured. This module decides
nothing about which examples a strategy picks; it only takes some away.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from localgen.errors import TaskError
from localgen.planning.prompts import Template
from localgen.planning.schema import RowSchema

CHAT_MARGIN = 32  # tokens of the chat template around the prompt, and the end token
# Lists of shown examples a prompt may lose, in this order; each keeps at least `KEEP`.
# The one example a rewrite is written from (`source`) is never dropped, only cut.
DROPPABLE = ("earlier", "boundary", "rejected", "examples", "document", "source")
KEEP = {"earlier": 0, "boundary": 0, "rejected": 0, "examples": 1, "document": 1, "source": 1}
CUT_MARK = " […]"


@dataclass
class PromptFit:
    """The context to fit and how to count; records what it had to shorten."""

    count: Callable[[str], int]  # tokens of a text
    context: int  # tokens the engine holds: prompt + row
    shortened: dict[str, int] = field(default_factory=dict)  # prompts shortened, by strategy
    cut_rows: dict[str, int] = field(default_factory=dict)  # rows without the full bound
    least: int | None = None  # the smallest budget given, of those rows

    def render(
        self, template: Template, variables: dict[str, Any], schema: RowSchema, strategy: str
    ) -> tuple[str, dict[str, Any], RowSchema]:
        """The prompt, the variables it was rendered from, and the schema with its budget."""
        reserve = min(schema.token_bound, self.context // 2)
        limit = self.context - reserve - CHAT_MARGIN
        prompt = template.render(**variables)
        tokens = self.count(prompt)
        shortened = False
        while tokens > limit:
            smaller = _shorten(variables)
            if smaller is None:
                raise TaskError(
                    f"a {strategy} prompt takes {tokens} tokens even with its examples cut, "
                    f"and the context holds {self.context} with {reserve} for the row: "
                    "shorten the task's context and descriptions or raise --max-model-len"
                )
            variables, shortened = smaller, True
            prompt = template.render(**variables)
            tokens = self.count(prompt)
        if shortened:
            self.shortened[strategy] = self.shortened.get(strategy, 0) + 1
        budget = self.context - tokens - CHAT_MARGIN
        if budget < schema.token_bound:
            self.cut_rows[schema.label] = self.cut_rows.get(schema.label, 0) + 1
            self.least = budget if self.least is None else min(self.least, budget)
            return prompt, variables, replace(schema, budget=budget)
        return prompt, variables, schema

    def tally(self) -> tuple[dict[str, int], dict[str, int], int | None]:
        """What was counted so far, to `restore` after building requests not to count."""
        return dict(self.shortened), dict(self.cut_rows), self.least

    def restore(self, tally: tuple[dict[str, int], dict[str, int], int | None]) -> None:
        self.shortened, self.cut_rows, self.least = dict(tally[0]), dict(tally[1]), tally[2]

    def notes(self) -> list[str]:
        notes = [
            f"{n} {strategy} prompts shortened to fit the context of {self.context} tokens "
            "(examples dropped or cut)"
            for strategy, n in self.shortened.items()
        ]
        if self.cut_rows:
            labels = ", ".join(f"{label} {n}" for label, n in self.cut_rows.items())
            notes.append(
                f"{sum(self.cut_rows.values())} rows ({labels}) get {self.least} tokens or "
                "more, fewer than the longest row could take; one cut off there is a failed "
                "attempt, retried"
            )
        return notes


def cut(text: str, chars: int) -> str:
    """`text`'s first `chars` characters, marked as cut where it was longer."""
    return text if len(text) <= chars else text[:chars].rstrip() + CUT_MARK


def _text(item: Any) -> str:
    return str(item["text"] if isinstance(item, dict) else item)


def _with_text(item: Any, text: str) -> Any:
    return {**item, "text": text} if isinstance(item, dict) else text


def _shorten(variables: dict[str, Any]) -> dict[str, Any] | None:
    """The variables with one example fewer, or else the longest shown text halved; None
    when nothing is left to take."""
    for name in DROPPABLE:
        shown = variables.get(name)
        if shown and len(shown) > KEEP[name]:
            return variables | {name: shown[:-1]}
    longest: tuple[int, str, int] | None = None
    for name in DROPPABLE:
        for i, item in enumerate(variables.get(name) or ()):
            size = len(_text(item))
            if longest is None or size > longest[0]:
                longest = (size, name, i)
    if longest is None or longest[0] < 80:
        return None
    _, name, i = longest
    items = list(variables[name])
    text = _text(items[i]).removesuffix(CUT_MARK)
    items[i] = _with_text(items[i], text[: len(text) // 2].rstrip() + CUT_MARK)
    return variables | {name: items}
