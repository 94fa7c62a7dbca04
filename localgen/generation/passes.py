"""A run's passes through the engine, and what it stores as they go.

`Generation` holds one run's state while the engine answers: the prepared plan, the run
folder, the keys already stored and the `RowWriter`. Its passes: the first (rows, and the
hierarchical summaries, not stored yet), the second (rows whose prompt needs what the
first wrote), then the label check (the model asked which label each row belongs to).
Each feeds the engine at most `--window` requests at a time, each built as it is taken,
and validates each completion against its schema; an invalid one is put back with a new
seed, a bounded number of times. Memory holds the requests in flight, not the run.

It does not read inputs, plan, start the engine or finish the run folder: see
`localgen.generation.prepare` and `localgen.generation.generate`.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import polars as pl

from localgen.artifacts import write_json
from localgen.engines.base import Completion, Engine, Feed
from localgen.generation.prepare import Prepared
from localgen.generation.rows import (
    CHECK_SCHEMA,
    DRAFT_SCHEMA,
    ROW_SCHEMA,
    failure,
    make_draft,
    make_row,
)
from localgen.generation.store import KeySet, RunFolder
from localgen.planning.channel import ChannelFit
from localgen.planning.check import CHECK_SUFFIX, LabelCheck
from localgen.planning.requests import SUMMARY_SUFFIX, Request
from localgen.progress import Progress

SHARD_SECONDS = 30.0  # ... and a shard at least this often: a kill loses little work
RETRY_SEED_STEP = 1_000_003  # a retry with the same seed would give the same output
# Stored rows a contrastive second-pass prompt may show as already written, per label.
EARLIER_POOL = 2_000

T = TypeVar("T")


@dataclass
class RowWriter:
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


class Generation:
    """One run's passes through an engine, and the state they share."""

    def __init__(self, prepared: Prepared, run: RunFolder, writer: RowWriter) -> None:
        self.config, self.plan = prepared.config, prepared.plan
        assert prepared.model is not None, "generate resolves the model"
        self.model, self.task = prepared.model, prepared.task
        self.run, self.writer = run, writer
        self.done: KeySet = run.rows.keys()  # the rows stored before this process

    def work_left(self) -> bool:
        """Whether the engine is needed: rows to write, or rows to check."""
        checked = self.run.checks.keys("fit_posterior" if self.config.fit_margin else None)
        unchecked = self.config.check_labels and len(checked) < len(self.done)
        return len(self.done) < self.plan.rows or unchecked

    def write_rows(self, engine: Engine) -> None:
        """The first pass (rows and summaries not stored yet), then the second (rows whose
        prompt needs what the first pass wrote), with a progress line over both."""
        progress = Progress(self.plan.rows, done=len(self.done), enabled=not self.config.quiet)
        first = self.plan.first_pass(self.done, self.run.drafts.keys())
        self._run_pass(engine, first, progress)
        self._run_pass(engine, self._second_pass(), progress)
        progress.close()

    def _run_pass(self, engine: Engine, requests: Iterable[Request], progress: Progress) -> None:
        """The requests through the engine, at most `--window` in flight, an invalid
        output retried a bounded number of times, each retry from the planned request with
        a derived seed (`_retry_request`) and put back in front of the feed, so it joins
        the running batch instead of waiting for it to drain. A pass with nothing to ask
        does not call the engine."""
        requests = iter(requests)
        if (head := next(requests, None)) is None:
            return
        config, writer = self.config, self.writer
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
            if draft := request.key.endswith(SUMMARY_SUFFIX):
                writer.add(make_draft(request, parsed, completion, attempt), draft=True)
            else:
                row = make_row(request, parsed, completion, self.model, engine, attempt)
                writer.add(row, draft=False)
            progress.advance(int(not draft), completion.completion_tokens)
        writer.flush()

    def _second_pass(self) -> Iterator[Request]:
        """Second-pass requests, from the summaries and rows the first pass stored, a
        window at a time: only the window's summaries, and a bounded pool of earlier rows
        per label (`EARLIER_POOL`), are read from the shards."""
        earlier: dict[str, list[tuple[str, str]]] | None = None
        for followups in _windows(self.plan.second_pass(self.done), self.config.window):
            if earlier is None:  # read once, when there is a second pass
                earlier = self._earlier_rows()
            wanted = [f.summary_key for f in followups if f.summary_key]
            summaries: dict[str, str] = {}
            if wanted:
                drafts = self.run.drafts.scan(DRAFT_SCHEMA).filter(pl.col("key").is_in(wanted))
                summaries = dict(drafts.select("key", "text").collect().iter_rows())
            for f in followups:
                summary = summaries.get(f.summary_key) if f.summary_key else None
                if f.summary_key and summary is None:
                    why = f"its first pass ({f.summary_key}) produced no valid summary"
                    self.writer.failures[f.key] = failure(f.key, f.request.label, 0, "skipped", why)
                    continue
                yield f.complete(summary, earlier.get(f.request.label, []) if f.earlier else [])

    def _earlier_rows(self) -> dict[str, list[tuple[str, str]]]:
        """(id, text) of the stored rows a contrastive second-pass prompt picks from, by
        label: each label's first `EARLIER_POOL` first-pass rows in plan order, so that a
        resumed run shows the same ones."""
        keys = list(self.plan.earlier_keys(EARLIER_POOL))
        stored = self.run.rows.scan(ROW_SCHEMA).filter(pl.col("request_key").is_in(keys))
        stored = stored.select("request_key", "id", "text", "label").sort("request_key")
        earlier: dict[str, list[tuple[str, str]]] = {}
        for _, row_id, text, label in stored.collect().iter_rows():
            earlier.setdefault(label, []).append((row_id, text))
        return earlier

    def check_labels(self, engine: Engine) -> None:
        """The label check (`localgen.planning.check`) for every stored row not checked
        yet, reading one shard at a time. An answer that is not one of the labels leaves
        the row's check_label null, not failed. With `fit_margin`, where the engine can
        score texts, also the fit margin (`localgen.planning.channel`), and a row checked
        earlier without one is checked again with it (the later answer is the one kept)."""
        scores = self.config.fit_margin and hasattr(engine, "likelihoods")
        checked = self._checked(scores)
        unchecked = self.run.rows.count() - len(checked)
        if unchecked <= 0:
            return
        check = LabelCheck(self.task)
        if not scores:
            self._check_only(engine, check, checked, unchecked)
            return
        channel = ChannelFit(self.task)
        label = "checks and fit scores"
        progress = Progress(2 * unchecked, enabled=not self.config.quiet, label=label)
        size = max(self.config.window, self.config.shard_rows)  # rows asked at once
        for rows in _windows(self._unchecked(checked), size):
            answers: dict[str, dict[str, Any]] = {}
            feed = Feed((check.request(*row) for row in rows), in_flight=self.config.window)
            for completion in engine.generate(feed):
                answer = _check_answer(feed, completion)
                answers[answer["request_key"]] = answer
                progress.advance(1, completion.completion_tokens)
            texts = [(text, row_label) for _, text, row_label, _ in rows]
            for (key, *_), fit in zip(rows, channel.score(engine, texts), strict=True):
                answers[key] |= {"fit_margin": fit.margin, "fit_posterior": fit.posterior}
                progress.advance(1)
            for part in _windows(answers.values(), self.config.shard_rows):
                self.run.checks.write(part, CHECK_SCHEMA)
        progress.close()

    def _checked(self, scores: bool) -> KeySet:
        """The rows whose check is done: answered, and where fit scores are asked for
        and can be given, scored."""
        return self.run.checks.keys("fit_posterior" if scores else None)

    def _check_only(self, engine: Engine, check: LabelCheck, checked: KeySet, count: int) -> None:
        """The label check alone, fed continuously, its answers written a shard at a time."""
        progress = Progress(count, enabled=not self.config.quiet, label="checks")
        answers: list[dict[str, Any]] = []
        requests = (check.request(*row) for row in self._unchecked(checked))
        feed = Feed(requests, in_flight=self.config.window)
        for completion in engine.generate(feed):
            answers.append(_check_answer(feed, completion))
            progress.advance(1, completion.completion_tokens)
            if len(answers) >= self.config.shard_rows:
                self.run.checks.write(answers, CHECK_SCHEMA)
                answers = []
        if answers:
            self.run.checks.write(answers, CHECK_SCHEMA)
        progress.close()

    def _unchecked(self, checked: KeySet) -> Iterator[tuple[str, str, str, int]]:
        """(key, text, label, seed) of the stored rows not checked yet, a shard at a time."""
        for shard in self.run.rows.files():
            rows = pl.read_parquet(shard, columns=["request_key", "text", "label", "seed"])
            for row in rows.iter_rows():
                if row[0] not in checked:
                    yield row


def _check_answer(feed: Feed, completion: Completion) -> dict[str, Any]:
    """A check's record: the row's key and the label the model answered (None where the
    answer is not one of the labels)."""
    parsed, _ = feed.answered(completion.key).schema.parse(completion.text)
    key = completion.key.removesuffix(CHECK_SUFFIX)
    return {"request_key": key, "check_label": parsed and parsed["label"]}


def _retry_request(request: Request, attempt: int) -> Request:
    """The planned request for retry `attempt` (1, 2, ...): a new seed derived from its own."""
    return dataclasses.replace(request, seed=(request.seed + attempt * RETRY_SEED_STEP) % 2**31)


def _windows(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size` (the last one shorter)."""
    iterator = iter(items)
    while window := list(itertools.islice(iterator, size)):
        yield window
