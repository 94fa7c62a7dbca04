"""What every engine is: the Engine protocol, the completion it yields, and the
constrained-decoding backends each engine accepts. Adapters import this module only."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from localgen.planning.requests import Request

ENGINES = ("vllm", "transformers", "openai", "fake")
# Constrained-decoding backends each engine accepts; the first is the default.
BACKENDS = {
    # guidance and outlines follow the row regex exactly; xgrammar a subset without
    # escapes (planning/schema.py says why). outlines compiles slowly on long rows.
    "vllm": ("guidance", "xgrammar", "outlines"),
    "transformers": ("llguidance", "outlines_core", "xgrammar"),
    # json_schema: response_format, any OpenAI-compatible server; grammar: vLLM servers only.
    "openai": ("json_schema", "grammar"),
    "fake": ("none",),
}


@dataclass(frozen=True)
class Completion:
    key: str  # the Request.key it answers
    text: str  # raw model output, expected to be the row's JSON
    finish_reason: str  # "stop", "length", "error", ...
    prompt_tokens: int
    completion_tokens: int
    error: str = ""  # why the engine refused the request (finish_reason "error"), one line
    # Mean log-probability of the completion's tokens under the model's own distribution
    # (before temperature and grammar): how likely the model finds what it wrote, given
    # the prompt. None where the engine does not return log-probabilities.
    mean_logprob: float | None = None


class Engine(Protocol):
    name: str
    backend: str
    context: int | None  # tokens a prompt and its row may take together; None: unknown

    def generate(self, requests: Sequence[Request]) -> Iterator[Completion]:
        """Submit all requests, yield completions as they finish."""
        ...

    def close(self) -> None:
        """Free the model; the engine cannot be used afterwards."""
        ...
