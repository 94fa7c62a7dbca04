"""Start one engine adapter in this process, by name; each adapter's library is imported
only here, when it is started. Settings are checked by `localgen.engines.loader` first;
the Ray engine (`ray_actors`) starts one of these inside each actor."""

from __future__ import annotations

import os

from localgen.config import EngineSettings
from localgen.engines.base import Engine
from localgen.errors import EngineError
from localgen.models.context import context_length
from localgen.models.resolve import ModelRef


def start_adapter(settings: EngineSettings, backend: str, model: ModelRef) -> Engine:
    """The adapter `settings.name` on `model`, with the decoding `backend`."""
    if settings.name == "vllm":
        from localgen.engines.vllm import VllmEngine

        context = context_length(settings.max_model_len, model.path)
        return VllmEngine(model, backend, context, settings.seed, settings.tensor_parallel_size)
    if settings.name == "transformers":
        from localgen.engines.transformers import TransformersEngine

        return TransformersEngine(model, backend, settings.seed)
    if settings.name == "openai":
        from localgen.engines.openai import OpenAIEngine, Server

        return OpenAIEngine(model, backend, settings.concurrency, Server.of(settings))
    from localgen.engines.fake import FakeEngine

    rate = os.environ.get("LOCALGEN_FAKE_TOKENS_PER_S")
    try:
        return FakeEngine(float(rate) if rate else None)
    except ValueError:
        raise EngineError(f"LOCALGEN_FAKE_TOKENS_PER_S must be a number, got {rate!r}") from None
