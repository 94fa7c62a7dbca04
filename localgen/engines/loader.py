"""Choose, check and start an engine from its settings; stop it when done.

`check_settings` fails early on a bad engine, backend or server URL, before any work;
`load_engine` imports the adapter it needs only then, so a missing engine library is an
install hint, not an import error at start-up.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from localgen.config import EngineSettings
from localgen.engines.adapters import start_adapter
from localgen.engines.base import BACKENDS, ENGINES, Engine
from localgen.errors import EngineError
from localgen.models.resolve import ModelRef, resolve_model
from localgen.progress import Say, silent


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
    if uses_ray and settings.name not in ("vllm", "transformers", "fake"):
        raise EngineError(
            f"--replicas and --ray-address run vllm, transformers or fake, not {settings.name}"
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
    for given, option in (
        (settings.api_key_file, "--api-key-file"),
        (settings.ca_cert, "--ca-cert"),
    ):
        if given is not None and settings.name != "openai":
            raise EngineError(f"{option} is for --engine openai, not {settings.name}")
    return backend


def resolve_engine_model(settings: EngineSettings, spec: str | None, say: Say = silent) -> ModelRef:
    """The model the engine will run: a local folder, or the one a server serves.
    Call check_settings first."""
    if settings.name == "fake":
        return ModelRef("fake", Path("."), "-")
    if settings.name == "openai":
        from localgen.engines.openai import Server, served_model

        return served_model(Server.of(settings), spec)
    return resolve_model(spec, say)


def load_engine(settings: EngineSettings, model: ModelRef, say: Say = silent) -> Engine:
    """Start the named engine on a model folder."""
    backend = check_settings(settings)
    if settings.replicas > 1 or settings.ray_address is not None:
        from localgen.engines.ray_actors import RayEngine

        return RayEngine(replace(settings, backend=backend), model, say)
    return start_adapter(settings, backend, model)


@contextmanager
def running(
    settings: EngineSettings, model: ModelRef, engine: Engine | None = None, say: Say = silent
) -> Iterator[Engine]:
    """The engine given, or one started on `model` and closed when the block ends."""
    if engine is not None:
        yield engine
        return
    started = load_engine(settings, model, say)
    try:
        yield started
    finally:
        started.close()
