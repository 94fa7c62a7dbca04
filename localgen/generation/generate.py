"""`localgen generate`: task file in, validated rows with provenance and a manifest out.

Steps: prepare (read the task and seed data, resolve the model, plan the requests:
`localgen.generation.prepare`) -> open the run folder, skipping what a previous,
interrupted run of the same plan already stored -> start the engine where work is left
and run the passes (`localgen.generation.passes`: rows, then the label check) -> write
the shards into the output table a bucket at a time -> finish the manifest. All of it
under the egress guard. A fault keeps every row received before it and marks the
manifest "interrupted"; rerunning the same command resumes.
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import ExitStack, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localgen.artifacts import write_json
from localgen.config import GenerateConfig
from localgen.data import data_warnings, label_conflicts
from localgen.engines.base import Engine
from localgen.engines.loader import running
from localgen.errors import OutputError
from localgen.generation import manifest as manifests
from localgen.generation.passes import Generation, RowWriter
from localgen.generation.prepare import Prepared, prepare
from localgen.generation.rows import CHECK_SCHEMA, ROW_SCHEMA
from localgen.generation.store import MANIFEST, RunFolder
from localgen.locks import writing
from localgen.models.resolve import ModelRef
from localgen.offline import apply_offline_env, egress_guard
from localgen.progress import Say, silent


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


def generate(
    config: GenerateConfig | Prepared,
    *,
    engine: Engine | None = None,
    model: ModelRef | None = None,
    say: Say = silent,
) -> GenerateResult:
    """Run a whole generation of a config, or of what `prepare` made of one. Pass
    `engine` (and `model`) to reuse a loaded engine."""
    apply_offline_env()
    started = time.monotonic()
    with ExitStack() as holding:
        audit = holding.enter_context(egress_guard(_config(config).engine.allow_hosts))
        if isinstance(config, GenerateConfig):
            config = prepare(config, say, model=model, engine=engine)
        prepared = config
        data_warnings([label_conflicts(prepared.seed_data)], prepared.config.strict, say)
        for note in prepared.notes:
            say(note)
        run = RunFolder(prepared.config.out)
        created = run.is_empty()
        holding.enter_context(writing(run.path, "generate"))  # one writer per run folder
        writer = _open(prepared, run, say)
        generation = Generation(prepared, run, writer)
        try:
            outputs = _run(generation, engine, say)
        except BaseException:
            _interrupted(generation, created, audit.as_dict())
            raise
        writer.manifest["timings"]["total_s"] = round(time.monotonic() - started, 3)
        manifests.finish(writer.manifest, prepared.plan, run, writer, outputs)
    # The audit closes with the guard; write the final manifest outside it.
    writer.manifest["egress"] = audit.as_dict()
    write_json(run.manifest_path, writer.manifest)
    return GenerateResult(
        out=run.path,
        planned=prepared.plan.rows,
        written=writer.resumed + writer.written,
        resumed=writer.resumed,
        failures=list(writer.failures.values()),
        outputs=outputs,
        manifest=writer.manifest,
    )


def _config(config: GenerateConfig | Prepared) -> GenerateConfig:
    return config if isinstance(config, GenerateConfig) else config.config


def _open(prepared: Prepared, run: RunFolder, say: Say) -> RowWriter:
    """Take the run folder (resuming or growing what it holds) and start its manifest."""
    config, plan = prepared.config, prepared.plan
    previous = run.prepare(plan.fingerprints, config.overwrite)
    done = len(run.rows.keys())
    if previous is not None and done:
        grows = previous["plan"]["fingerprint"] != plan.fingerprint
        how = "adding rows to" if grows else "resuming"
        say(f"{how} {config.out}: {done} of {plan.rows} rows already stored")
        if grows:
            run.forget_curation()  # it judged the rows before these
    manifest = manifests.started(config, prepared.task, prepared.seed_data, plan, prepared.notes)
    manifest["timings"] = {}
    return RowWriter(run, manifest, done, config.shard_rows)


def _run(generation: Generation, engine: Engine | None, say: Say) -> list[Path]:
    """Start the engine (unless one was given, or nothing is left to do), record it in
    the manifest, run the passes and close it; then write the output table."""
    config, run = generation.config, generation.run
    manifest = generation.writer.manifest
    timings = manifest["timings"]
    t0 = time.monotonic()
    work = generation.work_left()
    starting = running(config.engine, generation.model, engine, say) if work else nullcontext()
    with starting as active:
        timings["engine_start_s"] = round(time.monotonic() - t0, 3)
        manifest["model"] = {
            "name": generation.model.name,
            "path": generation.model.where,
            "config_hash": generation.model.config_hash,
        }
        manifest["engine"] = manifests.engine_entry(active, config.engine)
        write_json(run.manifest_path, manifest)
        t0 = time.monotonic()
        if active is not None:
            generation.write_rows(active)
            manifest["engine"] = manifests.engine_entry(active, config.engine)  # as it ended
        timings["generate_s"] = round(time.monotonic() - t0, 3)
        if active is not None and config.check_labels:
            if config.fit_margin and not hasattr(active, "likelihoods"):
                say(f"the {active.name} engine cannot score texts: the rows get no fit_margin")
            t0 = time.monotonic()
            generation.check_labels(active)
            timings["check_s"] = round(time.monotonic() - t0, 3)
    t0 = time.monotonic()
    outputs = run.finalize(config.formats, ROW_SCHEMA, CHECK_SCHEMA)
    timings["write_s"] = round(time.monotonic() - t0, 3)
    return outputs


def _interrupted(generation: Generation, created: bool, egress: dict[str, Any]) -> None:
    """After a fault: keep the rows received before it and mark the manifest
    "interrupted"; a run folder this process created and stored nothing in is removed."""
    run, writer = generation.run, generation.writer
    with suppress(OutputError):  # a full disk: what was flushed before stays
        writer.flush()
    if created and not run.rows.files():
        shutil.rmtree(run.path, ignore_errors=True)  # nothing worth keeping
        return
    # Stored: what the shards hold (rows whose shard a full disk refused were counted).
    counts = writer.counts() | {"stored": run.rows.count()}
    writer.manifest |= {"status": "interrupted", "counts": counts, "egress": egress}
    with suppress(OutputError):  # the disk may be too full for even the manifest
        write_json(run.manifest_path, writer.manifest)
