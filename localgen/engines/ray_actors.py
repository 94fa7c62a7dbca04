"""Scale-out on Ray: N actors, each holding one localgen engine (data parallel).

Each actor loads the engine the user chose (vLLM, with `--tensor-parallel-size` GPUs
each, or transformers) on the same local model folder, which must exist at the same path
on every node. The requests of a pass are cut into chunks and handed to the actors by
Ray's own `ActorPool` (no scheduler of ours); each chunk's completions come back as soon
as that chunk is done, so rows still reach the disk while the run goes on.

Without `--ray-address`, a private Ray instance is started on this machine, bound to
127.0.0.1, with no dashboard and no usage reporting. With one, the driver joins that
cluster; its host must be loopback or on the allow-list, like any other host.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from localgen.config import EngineSettings
from localgen.engines.adapters import start_adapter
from localgen.engines.base import Completion
from localgen.errors import EngineError
from localgen.models.resolve import ModelRef
from localgen.offline import apply_offline_env, egress_guard, is_loopback_host
from localgen.planning.requests import Request

CHUNKS_PER_ACTOR = 4  # enough to balance uneven actors, few enough to keep batches large
RAY_ENV = {"RAY_DISABLE_DOCKER_CPU_WARNING": "1"}  # usage stats are off in OFFLINE_ENV


def check_ray_address(address: str, allow_hosts: Sequence[str]) -> None:
    """A cluster address is `auto`, `HOST:PORT` or `ray://HOST:PORT`, on an allowed host."""
    if address == "auto":
        return
    host = address.removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
    if not host or (not is_loopback_host(host) and host not in set(allow_hosts)):
        raise EngineError(
            f"refusing to join the Ray cluster at {address}: {host or '?'} is not this "
            f"machine; name it with --allow-host {host or 'HOST'} to allow it"
        )


class EngineActor:
    """One engine inside a Ray actor (made remote at start, so `ray` stays optional)."""

    def __init__(self, settings: EngineSettings, model: ModelRef) -> None:
        apply_offline_env()  # before the engine imports vLLM or transformers
        self.allow = settings.allow_hosts
        self.handled = 0
        assert settings.backend is not None, "RayEngine passes the checked backend"
        with egress_guard(self.allow):
            self.engine = start_adapter(settings, settings.backend, model)

    def generate(self, requests: list[Request]) -> list[Completion]:
        with egress_guard(self.allow):
            completions = list(self.engine.generate(requests))
        self.handled += len(requests)
        return completions

    def describe(self) -> dict[str, object]:
        """Which engine this actor holds, in which process, and how much it has done."""
        return {
            "name": self.engine.name,
            "backend": self.engine.backend,
            "pid": os.getpid(),
            "handled": self.handled,
        }


class RayEngine:
    """The Engine protocol over `replicas` actors."""

    def __init__(self, settings: EngineSettings, model: ModelRef) -> None:
        try:
            import ray
            from ray.util import ActorPool
        except ImportError:
            raise EngineError("Ray is not installed: pip install 'localgen[ray]'") from None
        os.environ.update(RAY_ENV)
        self.started_ray = False
        self.context: int | None = settings.max_model_len
        if not ray.is_initialized():
            # The address was checked against the allow-list by check_settings.
            where: dict[str, Any] = (
                {"address": settings.ray_address}
                if settings.ray_address
                else {
                    "_node_ip_address": "127.0.0.1",
                    "include_dashboard": False,
                    "num_cpus": max(os.cpu_count() or 1, settings.replicas),
                }
            )
            try:
                ray.init(logging_level=logging.ERROR, log_to_driver=False, **where)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise EngineError(f"could not start or join Ray: {e}") from None
            self.started_ray = True
        has_gpus = ray.cluster_resources().get("GPU", 0) > 0
        gpus = settings.tensor_parallel_size if settings.name == "vllm" and has_gpus else 0
        inner = replace(settings, replicas=1, ray_address=None)
        actor_class: Any = ray.remote(num_cpus=1, num_gpus=gpus)(EngineActor)
        self.actors: list[Any] = [
            actor_class.remote(inner, model) for _ in range(settings.replicas)
        ]
        try:
            first: dict[str, Any] = ray.get(self.actors[0].describe.remote())
            ray.get([a.describe.remote() for a in self.actors[1:]])
        except ray.exceptions.RayError as e:
            self.close()
            message = str(e).strip().splitlines()[-1][:300]
            raise EngineError(f"a Ray actor could not start its engine: {message}") from None
        self.name, self.backend = str(first["name"]), str(first["backend"])
        self.pool = ActorPool(self.actors)
        self.replicas = settings.replicas

    def generate(self, requests: Sequence[Request]) -> Iterator[Completion]:
        if not requests:
            return
        size = max(1, math.ceil(len(requests) / (self.replicas * CHUNKS_PER_ACTOR)))
        chunks = [list(requests[i : i + size]) for i in range(0, len(requests), size)]
        for completions in self.pool.map_unordered(
            lambda actor, chunk: actor.generate.remote(chunk), chunks
        ):
            yield from completions

    def describe(self) -> list[dict[str, object]]:
        import ray

        return list(ray.get([a.describe.remote() for a in self.actors]))

    def close(self) -> None:
        import ray

        for actor in getattr(self, "actors", []):
            ray.kill(actor)
        self.actors = []
        if self.started_ray:
            ray.shutdown()
