"""`localgen generate`: task file in, validated rows with provenance and a manifest out.

Steps: read the task (and seed data) -> plan the requests -> skip the ones a previous,
interrupted run of the same plan already stored -> feed the rest to the engine, at most
`--window` in flight (each built as it is taken) -> validate each completion against its
schema -> write rows in shards -> put an invalid one back with a new seed, a bounded
number of times -> record what still failed -> ask the model which label each row
belongs to (the label check) -> write the shards into the output table a bucket at a
time. All of it under the egress guard; memory holds the requests in flight, not the run.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from localgen.artifacts import write_json
from localgen.config import GenerateConfig
from localgen.data import (
    LabeledData,
    data_warnings,
    label_conflicts,
    read_documents,
    read_task_data,
)
from localgen.engines.base import Engine, Feed
from localgen.engines.loader import check_settings, resolve_engine_model, running
from localgen.errors import OutputError
from localgen.generation import manifest as manifests
from localgen.generation.rejects import read_rejects
from localgen.generation.rows import (
    CHECK_SCHEMA,
    DRAFT_SCHEMA,
    ROW_SCHEMA,
    failure,
    make_draft,
    make_row,
)
from localgen.generation.store import MANIFEST, KeySet, RunFolder
from localgen.locks import writing
from localgen.models.context import context_length, token_counter
from localgen.models.resolve import ModelRef
from localgen.offline import apply_offline_env, egress_guard
from localgen.planning.check import CHECK_SUFFIX, LabelCheck
from localgen.planning.fit import PromptFit
from localgen.planning.plan import build_plan
from localgen.planning.requests import SUMMARY_SUFFIX, Plan, Request
from localgen.planning.task import Task, load_task
from localgen.progress import Progress, Say, silent

LOCAL_ENGINES = ("vllm", "transformers")  # engines that run a model folder in this process

SHARD_SECONDS = 30.0  # ... and a shard at least this often: a kill loses little work
RETRY_SEED_STEP = 1_000_003  # a retry with the same seed would give the same output
# Stored rows a contrastive second-pass prompt may show as already written, per label.
EARLIER_POOL = 2_000

T = TypeVar("T")


@dataclass
class GenerateResult:
    out: Path
    planned: int
    written: int
    resumed: int  # rows found from an earlier, interrupted run
    failures: list[dict[str, Any]]
    outputs: list[Path]
    manifest: dict[str, Any]

    @property
    def exit_code(self) -> int:
        """1 when some requests gave no valid row: the run is complete but not whole."""
        return 1 if self.failures else 0

    def message(self) -> str:
        """The one line for the person who ran it."""
        return (
            f"{self.written}/{self.planned} rows in {self.out}"
            + (f" ({self.resumed} resumed)" if self.resumed else "")
            + (f"; {len(self.failures)} failed, see manifest.json" if self.failures else "")
        )

    def render(self, as_json: bool = False) -> str:
        """What stdout gets: the output files, or a JSON summary."""
        if not as_json:
            return "\n".join(str(path) for path in self.outputs)
        summary = {
            "out": str(self.out),
            "planned": self.planned,
            "written": self.written,
            "resumed": self.resumed,
            "failed": len(self.failures),
            "outputs": [str(p) for p in self.outputs],
            "manifest": str(self.out / MANIFEST),
            "timings": self.manifest.get("timings"),
        }
        return json.dumps(summary, indent=2, ensure_ascii=False)


def prompt_fit(config: GenerateConfig, model: ModelRef | None) -> PromptFit | None:
    """What the plan measures prompts with: the model's tokenizer and context, where the
    model is a local folder this process runs."""
    if model is None or config.engine.name not in LOCAL_ENGINES:
        return None
    count = token_counter(model.path)
    if count is None:
        return None
    return PromptFit(count, context_length(config.engine.max_model_len, model.path))


def with_context(
    config: GenerateConfig, model: ModelRef, engine: Engine | None = None
) -> GenerateConfig:
    """The config with --max-model-len resolved: the running engine's, else the setting,
    else the model's own context."""
    if config.engine.name not in LOCAL_ENGINES:
        return config
    context = (engine.context if engine is not None else None) or context_length(
        config.engine.max_model_len, model.path
    )
    return dataclasses.replace(
        config, engine=dataclasses.replace(config.engine, max_model_len=context)
    )


def prepare_plan(
    config: GenerateConfig, fit: PromptFit | None = None
) -> tuple[Task, LabeledData | None, Plan]:
    """Read the inputs and plan the requests, without loading a model (`fit`, from
    `prompt_fit`, measures the prompts)."""
    task = load_task(config.task_path)
    columns = (config.text_column, config.label_column, task.label_names)
    seed_data = None if config.seed_data is None else read_task_data(config.seed_data, *columns)
    anchors = None if config.anchors is None else read_task_data(config.anchors, *columns)
    documents = None
    if config.documents is not None:
        documents = read_documents(config.documents, config.text_column)[0]
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
        language=config.language,
        fit=fit,
        more=config.more,
        documents=documents,
    )
    return task, seed_data, plan


def _retry_request(request: Request, attempt: int) -> Request:
    """The planned request for retry `attempt` (1, 2, ...): a new seed derived from its own."""
    return dataclasses.replace(request, seed=(request.seed + attempt * RETRY_SEED_STEP) % 2**31)


def _windows(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size` (the last one shorter)."""
    iterator = iter(items)
    while window := list(itertools.islice(iterator, size)):
        yield window


def _second_pass(
    plan: Plan,
    run: RunFolder,
    done: KeySet,
    failures: dict[str, dict[str, Any]],
    window: int,
) -> Iterator[Request]:
    """Second-pass requests, from the summaries and rows the first pass stored, a window
    at a time: only the window's summaries, and a bounded pool of earlier rows per label
    (`EARLIER_POOL`), are read from the shards."""
    earlier: dict[str, list[tuple[str, str]]] | None = None
    for followups in _windows(plan.second_pass(done), window):
        if earlier is None:  # read once, when there is a second pass
            earlier = _earlier_rows(plan, run)
        wanted = [f.summary_key for f in followups if f.summary_key]
        summaries: dict[str, str] = {}
        if wanted:
            drafts = run.drafts.scan(DRAFT_SCHEMA).filter(pl.col("key").is_in(wanted))
            summaries = dict(drafts.select("key", "text").collect().iter_rows())
        for f in followups:
            summary = summaries.get(f.summary_key) if f.summary_key else None
            if f.summary_key and summary is None:
                why = f"its first pass ({f.summary_key}) produced no valid summary"
                failures[f.key] = failure(f.key, f.request.label, 0, "skipped", why)
                continue
            yield f.complete(summary, earlier.get(f.request.label, []) if f.earlier else [])


def _earlier_rows(plan: Plan, run: RunFolder) -> dict[str, list[tuple[str, str]]]:
    """(id, text) of the stored rows a contrastive second-pass prompt picks from, by label:
    each label's first `EARLIER_POOL` first-pass rows in plan order, so that a resumed run
    shows the same ones."""
    keys = list(plan.earlier_keys(EARLIER_POOL))
    stored = run.rows.scan(ROW_SCHEMA).filter(pl.col("request_key").is_in(keys))
    stored = stored.select("request_key", "id", "text", "label").sort("request_key")
    earlier: dict[str, list[tuple[str, str]]] = {}
    for _, row_id, text, label in stored.collect().iter_rows():
        earlier.setdefault(label, []).append((row_id, text))
    return earlier


@dataclass
class _Writer:
    """What a run has produced so far: validated rows and drafts, buffered and written as
    shards (every `shard_rows` records or SHARD_SECONDS), the failures, the token counts,
    and the manifest's progress, rewritten with every shard."""

    run: RunFolder
    manifest: dict[str, Any]
    resumed: int
    shard_rows: int
    written: int = 0  # rows stored by this process
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: Counter[str] = field(default_factory=Counter)
    rows: list[dict[str, Any]] = field(default_factory=list)
    drafts: list[dict[str, Any]] = field(default_factory=list)
    last_flush: float = field(default_factory=time.monotonic)

    def counts(self) -> dict[str, int]:
        return {"stored": self.resumed + self.written, "failed": len(self.failures)}

    def add(self, record: dict[str, Any], draft: bool) -> None:
        (self.drafts if draft else self.rows).append(record)
        self.written += not draft
        if (
            len(self.rows) + len(self.drafts) >= self.shard_rows
            or time.monotonic() - self.last_flush > SHARD_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        if self.drafts:
            self.run.drafts.write(self.drafts, DRAFT_SCHEMA)
            self.drafts = []
        if self.rows:
            self.run.rows.write(self.rows, ROW_SCHEMA)
            self.rows = []
        self.last_flush = time.monotonic()
        self.manifest["counts"] = self.counts()
        write_json(self.run.manifest_path, self.manifest)


def _run_pass(
    engine: Engine,
    requests: Iterable[Request],
    model: ModelRef,
    config: GenerateConfig,
    writer: _Writer,
    progress: Progress,
) -> None:
    """The requests through the engine, at most `config.window` in flight, an invalid
    output retried a bounded number of times, each retry from the planned request with a
    derived seed (`_retry_request`) and put back in front of the feed, so it joins the
    running batch instead of waiting for it to drain. A pass with nothing to ask does
    not call the engine."""
    requests = iter(requests)
    if (head := next(requests, None)) is None:
        return
    feed = Feed(itertools.chain([head], requests), in_flight=config.window)
    retried: dict[str, tuple[Request, int]] = {}  # key -> (planned request, attempt)
    for completion in engine.generate(feed):
        request = feed.answered(completion.key)
        planned, attempt = retried.pop(request.key, (request, 0))
        writer.tokens["prompt"] += completion.prompt_tokens
        writer.tokens["completion"] += completion.completion_tokens
        parsed, reason = request.schema.parse(completion.text)
        if completion.finish_reason == "length" and parsed is None:
            reason = f"cut off at max_tokens ({request.max_tokens})"
        if completion.error:
            reason = f"engine: {completion.error}"
        if parsed is None or completion.error:
            writer.failures[request.key] = failure(
                request.key,
                request.label,
                attempt + 1,
                completion.finish_reason,
                reason,
                completion.text,
            )
            # A refused request would be refused again.
            if not completion.error and attempt < config.max_retries:
                retried[request.key] = (planned, attempt + 1)
                feed.put_back(_retry_request(planned, attempt + 1))
            continue
        writer.failures.pop(request.key, None)
        draft = request.key.endswith(SUMMARY_SUFFIX)
        if draft:
            writer.add(make_draft(request, parsed, completion, attempt), draft=True)
        else:
            writer.add(make_row(request, parsed, completion, model, engine, attempt), draft=False)
        progress.advance(int(not draft), completion.completion_tokens)
    writer.flush()


def generate(
    config: GenerateConfig,
    *,
    engine: Engine | None = None,
    model: ModelRef | None = None,
    say: Say = silent,
) -> GenerateResult:
    """Run a whole generation. Pass `engine` (and `model`) to reuse a loaded engine."""
    apply_offline_env()
    started = time.monotonic()
    with ExitStack() as holding:
        with egress_guard(config.engine.allow_hosts) as audit:
            task, seed_data, plan = prepare_plan(config)  # bad input fails before any model work
            data_warnings([label_conflicts(seed_data)], config.strict, say)
            check_settings(config.engine)
            if model is None:  # resolved before the run folder exists: a bad model writes nothing
                model = resolve_engine_model(config.engine, config.model, say)
            config = with_context(config, model, engine)
            fit = prompt_fit(config, model)
            if fit is not None:  # the same plan, its prompts measured
                task, seed_data, plan = prepare_plan(config, fit)
            notes = plan.notes + plan.sample_notes()
            for note in notes:
                say(note)
            run = RunFolder(config.out)
            created = run.is_empty()
            holding.enter_context(writing(config.out, "generate"))  # one writer per run folder
            previous = run.prepare(plan.fingerprints, config.overwrite)
            done = run.rows.keys()
            if previous is not None and done:
                grows = previous["plan"]["fingerprint"] != plan.fingerprint
                how = "adding rows to" if grows else "resuming"
                say(f"{how} {config.out}: {len(done)} of {plan.rows} rows already stored")
                if grows:
                    run.forget_curation()  # it judged the rows before these
            manifest = manifests.started(config, task, seed_data, plan, notes)
            manifest["timings"] = timings = {}
            writer = _Writer(run, manifest, len(done), config.shard_rows)
            try:
                _generate_with_engine(config, engine, model, plan, run, done, writer, say)
                t0 = time.monotonic()
                outputs = run.finalize(config.formats, ROW_SCHEMA, CHECK_SCHEMA)
                timings["write_s"] = round(time.monotonic() - t0, 3)
            except BaseException:
                with suppress(OutputError):  # keep the rows received before the fault
                    writer.flush()
                if created and not run.rows.files():
                    shutil.rmtree(config.out, ignore_errors=True)  # nothing worth keeping
                    raise
                manifest["status"] = "interrupted"
                manifest["counts"] = writer.counts()
                manifest["egress"] = audit.as_dict()
                write_json(run.manifest_path, manifest)
                raise
            timings["total_s"] = round(time.monotonic() - started, 3)
            manifests.finish(manifest, plan, run, writer, outputs)
        # The audit closes with the guard; write the final manifest outside it.
        manifest["egress"] = audit.as_dict()
        write_json(run.manifest_path, manifest)
        return GenerateResult(
            out=config.out,
            planned=plan.rows,
            written=writer.resumed + writer.written,
            resumed=writer.resumed,
            failures=list(writer.failures.values()),
            outputs=outputs,
            manifest=manifest,
        )


def _generate_with_engine(
    config: GenerateConfig,
    engine: Engine | None,
    model: ModelRef,
    plan: Plan,
    run: RunFolder,
    done: KeySet,
    writer: _Writer,
    say: Say,
) -> None:
    """Start the engine (unless one was given, or nothing is left to do), record it in
    the manifest, and run both passes; the engine is closed when they end."""
    manifest, timings = writer.manifest, writer.manifest["timings"]
    t0 = time.monotonic()
    work = len(done) < plan.rows or (config.check_labels and len(run.checks.keys()) < len(done))
    starting = running(config.engine, model, engine, say) if work else nullcontext(None)
    with starting as active:
        timings["engine_start_s"] = round(time.monotonic() - t0, 3)
        manifest["model"] = {
            "name": model.name,
            "path": model.where,
            "config_hash": model.config_hash,
        }
        manifest["engine"] = manifests.engine_entry(active, config.engine)
        write_json(run.manifest_path, manifest)
        t0 = time.monotonic()
        if active is not None:
            _generate_passes(active, plan, run, done, model, config, writer)
            manifest["engine"] = manifests.engine_entry(active, config.engine)  # as it ended
        timings["generate_s"] = round(time.monotonic() - t0, 3)
        if active is not None and config.check_labels:
            t0 = time.monotonic()
            _check_labels(active, load_task(config.task_path), run, config)
            timings["check_s"] = round(time.monotonic() - t0, 3)


def _generate_passes(
    engine: Engine,
    plan: Plan,
    run: RunFolder,
    done: KeySet,
    model: ModelRef,
    config: GenerateConfig,
    writer: _Writer,
) -> None:
    """The first pass (rows and summaries not stored yet), then the second (rows whose
    prompt needs what the first pass wrote), with a progress line over both."""
    progress = Progress(plan.rows, done=len(done), enabled=not config.quiet)
    first = plan.first_pass(done, run.drafts.keys())
    _run_pass(engine, first, model, config, writer, progress)
    second = _second_pass(plan, run, done, writer.failures, config.window)
    _run_pass(engine, second, model, config, writer, progress)
    progress.close()


def _check_labels(engine: Engine, task: Task, run: RunFolder, config: GenerateConfig) -> None:
    """The label check (`localgen.planning.check`) for every stored row not checked yet,
    a window at a time, reading one shard at a time. An answer that is not one of the
    labels leaves the row unchecked (null), not failed."""
    checked = run.checks.keys()
    unchecked = run.rows.count() - len(checked)
    if unchecked <= 0:
        return
    check = LabelCheck(task)
    progress = Progress(unchecked, enabled=not config.quiet, label="checks")
    answers: list[dict[str, Any]] = []
    requests = (check.request(*row) for row in _unchecked(run, checked))
    feed = Feed(requests, in_flight=config.window)
    for completion in engine.generate(feed):
        parsed, _ = feed.answered(completion.key).schema.parse(completion.text)
        key = completion.key.removesuffix(CHECK_SUFFIX)
        answers.append({"request_key": key, "check_label": parsed and parsed["label"]})
        progress.advance(1, completion.completion_tokens)
        if len(answers) >= config.shard_rows:
            run.checks.write(answers, CHECK_SCHEMA)
            answers = []
    if answers:
        run.checks.write(answers, CHECK_SCHEMA)
    progress.close()


def _unchecked(run: RunFolder, checked: KeySet) -> Iterator[tuple[str, str, str, int]]:
    """(key, text, label, seed) of the stored rows not checked yet, a shard at a time."""
    for shard in run.rows.files():
        rows = pl.read_parquet(shard, columns=["request_key", "text", "label", "seed"])
        for row in rows.iter_rows():
            if row[0] not in checked:
                yield row
