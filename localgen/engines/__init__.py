"""Engines: what turns planned requests into raw completions.

Each adapter lives in its own module and imports its heavy library lazily, so that
`localgen --help` is instant and a missing engine gives an install hint. An engine gets
every request of a pass at once (so vLLM can batch them continuously) and yields each
completion as soon as it is finished, in any order. Engines do not validate or store
rows; `localgen.generation.generate` does.

In-process: `vllm`, `transformers`, `fake`. Elsewhere: `openai` sends each request to an
OpenAI-compatible server, and `ray_actors` runs several in-process engines as Ray
actors (`--replicas`), behind the same interface.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from localgen.errors import EngineError
from localgen.models.resolve import ModelRef, resolve_model
from localgen.planning.plan import Request

ENGINES = ("vllm", "transformers", "openai", "fake")
# Constrained-decoding backends each engine accepts; the first is the default.
BACKENDS = {
    "vllm": ("xgrammar", "guidance", "outlines"),
    "transformers": ("outlines_core", "xgrammar", "llguidance"),
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
    base_url: str | None = None  # openai: the server, e.g. http://127.0.0.1:8000/v1
    allow_hosts: tuple[str, ...] = ()  # hosts besides loopback: a server, a Ray head
    concurrency: int = 32  # openai: requests in flight at once
    tensor_parallel_size: int = 1  # vllm: GPUs one model is split over
    replicas: int = 1  # >1 or a ray_address: that many engines, each in a Ray actor
    ray_address: str | None = None  # None: a private Ray instance on this machine


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
    uses_ray = settings.replicas > 1 or settings.ray_address is not None
    if uses_ray and settings.name not in ("vllm", "transformers"):
        raise EngineError(
            f"--replicas and --ray-address run vllm or transformers, not {settings.name}"
        )
    if settings.ray_address is not None:
        from localgen.engines.ray_actors import check_ray_address

        check_ray_address(settings.ray_address, settings.allow_hosts)
    if settings.tensor_parallel_size > 1 and settings.name != "vllm":
        raise EngineError("--tensor-parallel-size is a vllm setting")
    if settings.name == "openai":
        from localgen.engines.openai import check_base_url

        if not settings.base_url:
            raise EngineError("--engine openai needs --base-url (or LOCALGEN_BASE_URL)")
        check_base_url(settings.base_url, settings.allow_hosts)
    elif settings.base_url:
        raise EngineError(f"--base-url is for --engine openai, not {settings.name}")
    return backend


def resolve_engine_model(
    settings: EngineSettings, spec: str | None, log: Callable[[str], None] = print
) -> ModelRef:
    """The model the engine will run: a local folder, or the one a server serves.
    Call check_settings first."""
    if settings.name == "fake":
        return ModelRef("fake", Path("."), "-")
    if settings.name == "openai":
        from localgen.engines.openai import check_base_url, served_model

        assert settings.base_url is not None, "check_settings first"
        return served_model(check_base_url(settings.base_url, settings.allow_hosts), spec)
    return resolve_model(spec, log)


def load_engine(
    settings: EngineSettings, model: ModelRef, log: Callable[[str], None] = print
) -> Engine:
    """Start the named engine on a model folder."""
    backend = check_settings(settings)
    if settings.replicas > 1 or settings.ray_address is not None:
        from localgen.engines.ray_actors import RayEngine

        return RayEngine(replace(settings, backend=backend), model)
    if settings.name == "vllm":
        from localgen.engines.vllm import VllmEngine

        return VllmEngine(
            model, backend, settings.max_model_len, settings.seed, settings.tensor_parallel_size
        )
    if settings.name == "transformers":
        from localgen.engines.transformers import TransformersEngine

        return TransformersEngine(model, backend, settings.seed)
    if settings.name == "openai":
        from localgen.engines.openai import OpenAIEngine

        return OpenAIEngine(model, backend, settings.concurrency)
    import os

    from localgen.engines.fake import FakeEngine

    rate = os.environ.get("LOCALGEN_FAKE_TOKENS_PER_S")
    try:
        return FakeEngine(float(rate) if rate else None)
    except ValueError:
        raise EngineError(f"LOCALGEN_FAKE_TOKENS_PER_S must be a number, got {rate!r}") from None
