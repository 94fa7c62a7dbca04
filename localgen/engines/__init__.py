"""Engines: what turns planned requests into raw completions.

Each adapter lives in its own module and imports its heavy library lazily, so that
`localgen --help` is instant and a missing engine gives an install hint. An engine gets
every request of a pass at once (so vLLM can batch them continuously) and yields each
completion as soon as it is finished, in any order. Engines do not validate or store
rows; `localgen.generate` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from localgen.errors import EngineError
from localgen.models import ModelRef
from localgen.plan import Request

ENGINES = ("vllm", "transformers", "fake")
# Constrained-decoding backends each engine accepts; the first is the default.
BACKENDS = {
    "vllm": ("xgrammar", "guidance", "outlines"),
    "transformers": ("outlines_core", "xgrammar", "llguidance"),
    "fake": ("none",),
}


@dataclass(frozen=True)
class Completion:
    key: str  # the Request.key it answers
    text: str  # raw model output, expected to be the row's JSON
    finish_reason: str  # "stop", "length", "error", ...
    prompt_tokens: int
    completion_tokens: int


class Engine(Protocol):
    name: str
    backend: str

    def generate(self, requests: Sequence[Request]) -> Iterator[Completion]:
        """Submit all requests, yield completions as they finish."""
        ...

    def close(self) -> None:
        """Free the model; the engine cannot be used afterwards."""
        ...


@dataclass(frozen=True)
class EngineSettings:
    name: str = "vllm"
    backend: str | None = None  # None: the engine's default (first in BACKENDS)
    max_model_len: int = 2048  # prompt + row; few-shot prompts with long examples need room
    seed: int = 0


def check_settings(settings: EngineSettings) -> str:
    """Fail early on an unknown engine or backend; return the backend to use."""
    if settings.name not in ENGINES:
        raise EngineError(f"unknown engine '{settings.name}'; choose one of {', '.join(ENGINES)}")
    backend = settings.backend or BACKENDS[settings.name][0]
    if backend not in BACKENDS[settings.name]:
        raise EngineError(
            f"the {settings.name} engine has no decoding backend '{backend}'; "
            f"choose one of {', '.join(BACKENDS[settings.name])}"
        )
    return backend


def load_engine(
    settings: EngineSettings, model: ModelRef, log: Callable[[str], None] = print
) -> Engine:
    """Start the named engine on a model folder."""
    backend = check_settings(settings)
    if settings.name == "vllm":
        from localgen.engines.vllm import VllmEngine

        return VllmEngine(model, backend, settings.max_model_len, settings.seed)
    if settings.name == "transformers":
        from localgen.engines.transformers import TransformersEngine

        return TransformersEngine(model, backend, settings.seed)
    import os

    from localgen.engines.fake import FakeEngine

    rate = os.environ.get("LOCALGEN_FAKE_TOKENS_PER_S")
    try:
        return FakeEngine(float(rate) if rate else None)
    except ValueError:
        raise EngineError(f"LOCALGEN_FAKE_TOKENS_PER_S must be a number, got {rate!r}") from None
