"""What every engine is: the Engine protocol, the feed it takes requests from, the
completion it yields, and the constrained-decoding backends each engine accepts.
Adapters import this module only."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
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
    # Where the request asked for them (Request.top_logprobs): per generated token, the
    # sampled token first, then the most likely alternatives, each as (decoded text,
    # log-probability). None where not asked for or the engine cannot give them.
    top_logprobs: tuple[tuple[tuple[str, float], ...], ...] | None = None
    # Prompt tokens the engine's prefix cache served instead of computing them (vLLM's
    # num_cached_tokens; a server's usage.prompt_tokens_details.cached_tokens). None
    # where the engine does not say.
    cached_tokens: int | None = None


@dataclass(frozen=True)
class Continuation:
    """A text scored after a prompt (`Engine.likelihoods`): the chat's user message, the
    start of the model's reply, and the text that follows it."""

    prompt: str
    start: str
    text: str


class Feed:
    """The requests an engine takes as it has room: the planned ones in order, with the
    ones put back (retries) first. An engine holds at most `in_flight` requests it has
    taken and not yet answered, and takes more as answers come back, so its batch stays
    full without the drain a fixed batch has at its end, and memory holds `in_flight`
    requests however long the run (None: no bound).

    Unlike an iterator, a feed that is empty now may have more later: a retry is put back
    when its answer is read. So an engine is done when it holds no request and `take`
    gives none. Whoever reads the answers calls `answered` for each, which hands back the
    request and forgets it."""

    def __init__(self, requests: Iterable[Request], in_flight: int | None = None) -> None:
        if in_flight is not None and in_flight < 1:
            raise ValueError("a feed needs room for at least one request in flight")
        self.in_flight = in_flight
        self._planned = iter(requests)
        self._back: deque[Request] = deque()
        self._out: dict[str, Request] = {}  # taken, not yet answered

    @classmethod
    def of(cls, requests: Iterable[Request] | Feed) -> Feed:
        """`requests` as a feed: a list is taken all at once, as one batch."""
        if isinstance(requests, Feed):
            return requests
        if isinstance(requests, Sequence):
            return cls(requests, max(1, len(requests)))
        return cls(requests)

    def room(self, holding: int) -> int | None:
        """How many more an engine holding `holding` requests may take (None: any)."""
        return None if self.in_flight is None else max(0, self.in_flight - holding)

    def take(self, most: int | None) -> list[Request]:
        """Up to `most` requests (None: every one there is now), put-back ones first."""
        taken: list[Request] = []
        while most is None or len(taken) < most:
            if self._back:
                request = self._back.popleft()
            elif (request := next(self._planned, None)) is None:  # type: ignore[assignment]
                break
            self._out[request.key] = request
            taken.append(request)
        return taken

    def answered(self, key: str) -> Request:
        """The request an answer is for; it is no longer out."""
        return self._out.pop(key)

    def put_back(self, request: Request) -> None:
        """Take `request` again before the planned ones (a retry, with its own seed)."""
        self._back.append(request)


class Engine(Protocol):
    name: str
    backend: str
    context: int | None  # tokens a prompt and its row may take together; None: unknown

    def generate(self, requests: Iterable[Request] | Feed) -> Iterator[Completion]:
        """Take requests from `requests` (`Feed.of`) as there is room, yield each
        completion as it finishes."""
        ...

    def close(self) -> None:
        """Free the model; the engine cannot be used afterwards."""
        ...
