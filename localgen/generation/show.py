"""Views for people: a sample of a run's rows (of the shards stored so far, while it is
running or after an interruption), and a plan before it runs."""

from __future__ import annotations

import json
from pathlib import Path

from localgen.generation.rows import ROW_SCHEMA
from localgen.generation.store import RunFolder
from localgen.planning.requests import SUMMARY_SUFFIX, Plan
from localgen.planning.task import STRATEGIES


def head(run_dir: Path, limit: int, as_json: bool = False) -> str:
    run = RunFolder(run_dir)
    so_far = ""
    if not run.output_table.is_file() and run.rows.files():  # whole shards: a consistent view
        frame = run.rows.scan(ROW_SCHEMA).sort("request_key").collect()
        status = (run.read_manifest() or {}).get("status", "unfinished")
        so_far = f" so far (status: {status}; the run is not finished)"
    else:
        frame = run.read_rows()
    if as_json:
        return "\n".join(
            json.dumps(r, ensure_ascii=False) for r in frame.head(limit).iter_rows(named=True)
        )
    counts = frame.group_by("label").len().sort("label")
    lines = [
        f"{frame.height} rows{so_far}: " + ", ".join(f"{k} {v}" for k, v in counts.iter_rows())
    ]
    # A sample spread over the run (rows are sorted by label), not only the first label.
    step = max(1, frame.height // limit)
    for row in frame.gather_every(step).head(limit).iter_rows(named=True):
        lines.append(f"[{row['label']} | {row['strategy']}] {row['text']}")
    return "\n".join(lines)


def _sample_prompts(plan: Plan, limit: int) -> list[tuple[str, str, str]]:
    """(key, strategy, prompt) of the first request of each strategy and pass, then more."""
    first = [(r.key, r.strategy, r.prompt) for r in plan.requests + plan.drafts]
    second = [
        (f.key, f.request.strategy, f.complete(PLACEHOLDER_SUMMARY, PLACEHOLDER_EARLIER).prompt)
        for f in plan.followups
    ]
    seen: set[tuple[str, str]] = set()
    picked: list[tuple[str, str, str]] = []
    rest: list[tuple[str, str, str]] = []
    for item, stage in [(x, "1") for x in first] + [(x, "2") for x in second]:
        kind = (item[1] + ("/summary" if item[0].endswith(SUMMARY_SUFFIX) else ""), stage)
        (rest if kind in seen else picked).append(item)
        seen.add(kind)
    return (picked + rest)[:limit] if limit >= 0 else picked


PLACEHOLDER_SUMMARY = "<the summary written in the first pass>"
PLACEHOLDER_EARLIER = [("-", "<a row generated in the first pass>")]


def plan_summary(plan: Plan, n_prompts: int = -1, as_json: bool = False) -> str:
    """Rows per label and strategy, notes, and rendered prompts (-1: one per strategy)."""
    prompts = _sample_prompts(plan, n_prompts)
    if as_json:
        return json.dumps(
            {
                "rows": plan.rows,
                "first_pass": len(plan.requests) + len(plan.drafts),
                "second_pass": len(plan.followups),
                "summaries": len(plan.drafts),
                "per_label": plan.counts(),
                "fingerprint": plan.fingerprint,
                "notes": plan.notes,
                "limits": plan.limits,
                "prompts": [{"key": k, "strategy": s, "prompt": p} for k, s, p in prompts],
            },
            indent=2,
        )
    counts = plan.counts()
    strategies = [s for s in STRATEGIES if any(s in c for c in counts.values())]
    width = max([len("label"), *(len(lab) for lab in counts)])
    lines = [
        f"{plan.rows} rows planned: {len(plan.requests)} in the first pass"
        + (f" with {len(plan.drafts)} summaries" if plan.drafts else "")
        + (f", {len(plan.followups)} in the second" if plan.followups else "")
        + f" (plan {plan.fingerprint})",
        "",
        "  ".join([f"{'label':<{width}}", *(f"{s:>12}" for s in strategies), f"{'total':>7}"]),
    ]
    for label, by_strategy in counts.items():
        cells = [f"{by_strategy.get(s, 0):>12}" for s in strategies]
        lines.append("  ".join([f"{label:<{width}}", *cells, f"{sum(by_strategy.values()):>7}"]))
    lines += [f"limits: {plan.limits}"] if plan.limits else []
    lines += [f"note: {n}" for n in plan.notes]
    for key, strategy, prompt in prompts:
        lines += ["", f"--- {key} ({strategy}) ---", prompt]
    return "\n".join(lines)
