"""Views for people: a sample of a run's rows (of the shards stored so far, while it is
running or after an interruption), and a plan before it runs."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from localgen.errors import OutputError
from localgen.generation.rows import ROW_SCHEMA
from localgen.generation.store import RunFolder
from localgen.planning.requests import (
    PLACEHOLDER_EARLIER,
    PLACEHOLDER_SUMMARY,
    Plan,
    Step,
)
from localgen.planning.task import STRATEGIES


def head(run_dir: Path, limit: int, as_json: bool = False, source: str = "auto") -> str:
    """A count per label and `limit` rows spread over the run (of a finished run: the
    rows `source` names, curation.rules.ROW_SOURCES); reads the labels column and the rows
    shown, never the whole table."""
    run = RunFolder(run_dir)
    so_far = ""
    if not run.output_table.is_file() and run.rows.files():  # whole shards: a consistent view
        rows = run.rows.scan(ROW_SCHEMA)
        status = (run.read_manifest() or {}).get("status", "unfinished")
        so_far = f" so far (status: {status}; the run is not finished)"
    else:
        run.read_rows(columns=[])  # a clear error for a missing or unreadable table
        table = run.chosen_table(source)
        rows = pl.scan_parquet(table)
        if table != run.output_table:
            so_far = f" kept by curation ({table.name})"
    try:
        if as_json:  # the first rows
            sample = rows.head(limit).collect()
            return "\n".join(
                json.dumps(r, ensure_ascii=False) for r in sample.iter_rows(named=True)
            )
        height = rows.select(pl.len()).collect().item()
        # A sample spread over the run (rows are in label order), not only the first label.
        sample = rows.gather_every(max(1, height // limit)).head(limit).collect()
        counts = rows.group_by("label").len().sort("label").collect()
    except (pl.exceptions.PolarsError, OSError) as e:
        why = str(e).strip().splitlines()[0]
        raise OutputError(f"{run_dir}: cannot read its rows: {why}") from None
    lines = [f"{height} rows{so_far}: " + ", ".join(f"{k} {v}" for k, v in counts.iter_rows())]
    for row in sample.iter_rows(named=True):
        lines.append(f"[{row['label']} | {row['strategy']}] {row['text']}")
    return "\n".join(lines)


def _prompts(step: Step) -> list[tuple[str, str, tuple[str, str, str]]]:
    """(kind, key, (key, strategy, prompt)) of a step's requests, the kind telling first
    pass, summary and second pass apart; a second-pass prompt shows placeholders."""
    out = [(r.strategy, r.key, (r.key, r.strategy, r.prompt)) for r in step.requests]
    out += [(r.strategy + "/summary", r.key, (r.key, r.strategy, r.prompt)) for r in step.drafts]
    for f in step.followups:
        prompt = f.complete(PLACEHOLDER_SUMMARY, PLACEHOLDER_EARLIER).prompt
        out.append((f.request.strategy + "/second", f.key, (f.key, f.request.strategy, prompt)))
    return out


def _sample_prompts(plan: Plan, limit: int) -> list[tuple[str, str, str]]:
    """(key, strategy, prompt) of the first request of each strategy and pass, then more
    in plan order (-1: one of each); only the requests shown are built."""
    with plan.unmeasured():
        picked: list[tuple[str, str, str]] = []
        kinds: set[str] = set()
        for position in plan.probes():
            for kind, _, item in _prompts(plan.step(position)):
                if kind not in kinds:
                    kinds.add(kind)
                    picked.append(item)
        if limit < 0:
            return picked
        shown = {key for key, _, _ in picked}
        for step in plan.steps():
            if len(picked) >= limit:
                break
            picked += [item for _, key, item in _prompts(step) if key not in shown]
        return picked[:limit]


def plan_summary(plan: Plan, n_prompts: int = -1, as_json: bool = False) -> str:
    """Rows per label and strategy, notes, and rendered prompts (-1: one per strategy)."""
    prompts = _sample_prompts(plan, n_prompts)
    notes = plan.notes + plan.sample_notes()
    if as_json:
        return json.dumps(
            {
                "rows": plan.rows,
                "first_pass": plan.first_pass_rows + plan.summaries,
                "second_pass": plan.second_pass_rows,
                "summaries": plan.summaries,
                "per_label": plan.counts(),
                "fingerprint": plan.fingerprint,
                "notes": notes,
                "limits": plan.limits,
                "prompts": [{"key": k, "strategy": s, "prompt": p} for k, s, p in prompts],
            },
            indent=2,
        )
    counts = plan.counts()
    strategies = [s for s in STRATEGIES if any(s in c for c in counts.values())]
    width = max([len("label"), *(len(lab) for lab in counts)])
    lines = [
        f"{plan.rows} rows planned: {plan.first_pass_rows} in the first pass"
        + (f" with {plan.summaries} summaries" if plan.summaries else "")
        + (f", {plan.second_pass_rows} in the second" if plan.second_pass_rows else "")
        + f" (plan {plan.fingerprint})",
        "",
        "  ".join([f"{'label':<{width}}", *(f"{s:>12}" for s in strategies), f"{'total':>7}"]),
    ]
    for label, by_strategy in counts.items():
        cells = [f"{by_strategy.get(s, 0):>12}" for s in strategies]
        lines.append("  ".join([f"{label:<{width}}", *cells, f"{sum(by_strategy.values()):>7}"]))
    lines += [f"limits: {plan.limits}"] if plan.limits else []
    lines += [f"note: {n}" for n in notes]
    for key, strategy, prompt in prompts:
        lines += ["", f"--- {key} ({strategy}) ---", prompt]
    return "\n".join(lines)
