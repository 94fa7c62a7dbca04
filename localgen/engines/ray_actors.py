"""Scale-out on Ray: N actors, each holding one localgen engine (data parallel).

Each actor loads the engine the user chose (vLLM, with `--tensor-parallel-size` GPUs
each, or transformers) on the same local model folder, which must exist at the same path
on every node; Ray spreads the actors over the nodes. The requests of a pass are cut
into chunks; an actor that finishes one gets the next, and each chunk's completions come
back whole as soon as it is done, so rows still reach the disk while the run goes on.
An actor that dies (its node lost, its process killed) loses only the chunk it held,
which goes to an actor still alive: nothing of it had come back, so nothing is repeated.
With no actor left, the run stops with one line and resumes like any other.

Without `--ray-address`, a private Ray instance is started on this machine, bound to
127.0.0.1, with no dashboard and no usage reporting. With one, the driver joins that
cluster; its host must be loopback or on the allow-list, like any other host.
"""

from __future__ import annotations

import logging
import math
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from localgen.config import EngineSettings
from localgen.engines.adapters import start_adapter
from localgen.engines.base import Completion, Feed
from localgen.errors import EngineError
from localgen.models.resolve import ModelRef
from localgen.offline import apply_offline_env, egress_guard, is_loopback_host
from localgen.planning.requests import Request
from localgen.progress import Say, silent

CHUNKS_PER_ACTOR = 4  # enough to balance uneven actors, few enough to keep batches large
RAY_ENV = {"RAY_DISABLE_DOCKER_CPU_WARNING": "1"}  # usage stats are off in OFFLINE_ENV


def _host(address: str) -> str:
    return address.removeprefix("ray://").rsplit(":", 1)[0].strip("[]")


def check_ray_address(address: str, allow_hosts: Sequence[str]) -> None:
    """A cluster address is `auto`, `HOST:PORT` or `ray://HOST:PORT`, on an allowed host."""
    if address == "auto":
        return
    host = _host(address)
    if not host or (not is_loopback_host(host) and host not in set(allow_hosts)):
        raise EngineError(
            f"refusing to join the Ray cluster at {address}: {host or '?'} is not this "
            f"machine; name it with --allow-host {host or 'HOST'} to allow it"
        )


@contextmanager
def _joining_on_loopback(address: str | None) -> Iterator[dict[str, Any]]:
    """Extra ray.init arguments for the cluster at `address`. Ray turns a loopback address
    into this machine's network address before it connects (right for a head started
    on that address, wrong for one bound to 127.0.0.1, where it then waits for ever);
    for a loopback address it is told to stay on loopback while it connects."""
    if address is None or address == "auto" or not is_loopback_host(_host(address)):
        yield {}
        return
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False  # services.get_node_ip_address: loopback
    try:
        yield {"_node_ip_address": "127.0.0.1"}
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


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
        import ray

        return {
            "name": self.engine.name,
            "backend": self.engine.backend,
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            "handled": self.handled,
        }


class RayEngine:
    """The Engine protocol over `replicas` actors."""

    def __init__(self, settings: EngineSettings, model: ModelRef, say: Say = silent) -> None:
        try:
            import ray
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
                with _joining_on_loopback(settings.ray_address) as loopback:
                    ray.init(logging_level=logging.ERROR, log_to_driver=False, **where, **loopback)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise EngineError(f"could not start or join Ray: {e}") from None
            self.started_ray = True
        has_gpus = ray.cluster_resources().get("GPU", 0) > 0
        gpus = settings.tensor_parallel_size if settings.name == "vllm" and has_gpus else 0
        inner = replace(settings, replicas=1, ray_address=None)
        actor_class: Any = ray.remote(num_cpus=1, num_gpus=gpus, scheduling_strategy="SPREAD")(
            EngineActor
        )
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
        self.replicas = settings.replicas
        self.say = say
        self.lost = 0  # actors that died during the run

    def generate(self, requests: Iterable[Request] | Feed) -> Iterator[Completion]:
        """What the feed has room for, cut into a few chunks per actor (as many as
        `CHUNKS_PER_ACTOR` of what is waiting), each sent to an idle actor; a chunk's
        completions are yielded when it comes back, and a lost actor's chunk goes first
        to the next idle one."""
        import ray

        feed = Feed.of(requests)
        waiting: deque[Request] = deque()  # taken from the feed, not yet sent
        lost: deque[list[Request]] = deque()  # chunks of actors that died, to send again
        idle = list(self.actors)
        running: dict[Any, tuple[Any, list[Request]]] = {}
        while True:
            sent = [chunk for _, chunk in running.values()] + list(lost)
            held = len(waiting) + sum(len(chunk) for chunk in sent)
            waiting.extend(feed.take(feed.room(held)))
            size = max(1, math.ceil(len(waiting) / (len(self.actors) * CHUNKS_PER_ACTOR)))
            while idle and (lost or waiting):
                chunk = (
                    lost.popleft() if lost else [waiting.popleft() for _ in range(size) if waiting]
                )
                actor = idle.pop(0)
                running[actor.generate.remote(chunk)] = (actor, chunk)
            if not running:
                return
            [done], _ = ray.wait(list(running), num_returns=1)
            actor, chunk = running.pop(done)
            try:
                completions = ray.get(done)
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as e:
                self._lose(actor, chunk, e)
                lost.append(chunk)
                continue
            except ray.exceptions.RayError as e:
                message = str(e).strip().splitlines()[-1][:300]
                raise EngineError(f"a Ray actor failed: {message}") from None
            idle.append(actor)
            yield from completions

    def _lose(self, actor: Any, chunk: list[Request], error: Exception) -> None:
        """Forget a dead actor; fail when none is left."""
        self.actors.remove(actor)
        self.lost += 1
        reason = type(error).__name__
        if not self.actors:
            raise EngineError(
                f"every Ray actor is gone (the last: {reason}); the rows received are kept: "
                "rerun the same command once the cluster is back"
            )
        self.say(
            f"warning: a Ray actor was lost ({reason}); its {len(chunk)} requests go to the "
            f"{len(self.actors)} left"
        )

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
