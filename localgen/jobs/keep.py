"""`localgen run --keep N`: generate and curate, then grow the run in rounds until N rows
of each label pass curation, within a budget.

A round asks each short label for what it misses, divided by the share of its rows that
passed so far (at least `MIN_RATE`), plus `MARGIN`; the rows come from the same plan
extended (`build_plan(more=...)`), so the rows already stored stay as they are and a
killed run resumes exactly. The rounds stop when every label has N, when the budget
(`keep_budget` x N rows planned per label) is spent, when a round adds no passing row to
any short label, or after `KEEP_ROUNDS` rounds. Curation's surplus rule keeps the first N
of each label. Rerunning the same command reuses the rounds the run folder records, so
raising N later adds rounds to the same run.
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import ExitStack
from typing import Any

from localgen.config import KEEP_ROUNDS, CurateConfig, RunConfig
from localgen.curation.curate import curate, summary_table
from localgen.engines.loader import running
from localgen.generation.generate import GenerateResult, generate
from localgen.generation.prepare import prepare
from localgen.generation.store import RunFolder
from localgen.offline import egress_guard
from localgen.progress import Say

MIN_RATE = 0.1  # the pass rate a round assumes for a label of which no row passed yet
MARGIN = 1.1  # a round asks this much more than the pass rate says it needs


def generate_and_curate(
    config: RunConfig, say: Say, engine: Any = None, model: Any = None
) -> tuple[GenerateResult, dict[str, Any], dict[str, Any] | None]:
    """Generate, curate and, with `config.keep`, grow in rounds: (the last generation's
    result, its curation, what the rounds did or None)."""
    gen = config.generation
    curation_config = CurateConfig(
        gen.out,
        gen.seed_data,
        config.test,
        gen.text_column,
        gen.label_column,
        keep=config.keep,
    )
    if config.keep is None:
        result = generate(gen, engine=engine, model=model, say=say)
        return result, _curated(curation_config, say), None
    more = [] if gen.overwrite else _stored_rounds(RunFolder(gen.out))
    before: dict[str, int] | None = None
    with ExitStack() as stack:
        while True:
            asked = dataclasses.replace(gen, more=tuple(more))
            with egress_guard(gen.engine.allow_hosts):  # resolving may ask a server
                prepared = prepare(asked, say, model=model, engine=engine)
            model = prepared.model  # resolved once, by the first round
            result = generate(prepared, engine=engine, say=say)
            gen = dataclasses.replace(gen, overwrite=False)  # a later round adds to it
            curation = _curated(curation_config, say)
            passed = _passed(curation)
            extra, outcome = next_round(_planned(result), passed, config, len(more), before)
            before = passed
            if not extra:
                break
            more.append(extra)
            rows = ", ".join(f"{label} {n}" for label, n in extra.items())
            say(f"round {len(more) + 1}: labels short of {config.keep} rows: asking {rows}")
            if engine is None:  # one engine for every round that follows
                with egress_guard(gen.engine.allow_hosts):  # started as generate starts it
                    engine = stack.enter_context(running(gen.engine, model, None, say))
    for note in outcome["notes"]:
        say(note)
    return result, curation, outcome


def _curated(config: CurateConfig, say: Say) -> dict[str, Any]:
    curation = curate(config, say=say)
    say(summary_table(curation))
    return curation


def _stored_rounds(run: RunFolder) -> list[dict[str, int]]:
    """The rounds the run folder's plan already has (a rerun, or a larger --keep)."""
    manifest = run.read_manifest() or {}
    return [dict(r) for r in manifest.get("plan", {}).get("more", [])]


def _planned(result: GenerateResult) -> dict[str, int]:
    """Rows planned per label, over every round."""
    per_label = result.manifest["plan"]["per_label"]
    return {label: sum(counts.values()) for label, counts in per_label.items()}


def _passed(curation: dict[str, Any]) -> dict[str, int]:
    """Rows per label that every rule but surplus kept."""
    return dict(curation["rules"]["surplus"].get("passed_per_label", {}))


def next_round(
    planned: dict[str, int],
    passed: dict[str, int],
    config: RunConfig,
    rounds: int,
    before: dict[str, int] | None = None,
) -> tuple[dict[str, int], dict[str, Any]]:
    """The rows to ask per short label in the next round (empty: stop), and the state of
    the rounds so far, for comparison.json. `rounds`: rounds added so far; `before`: the
    rows that passed before the last round."""
    assert config.keep is not None
    keep, budget = config.keep, math.ceil(config.keep_budget * config.keep)
    short = {label: passed.get(label, 0) for label in planned if passed.get(label, 0) < keep}
    stalled = before is not None and all(got <= before.get(lab, 0) for lab, got in short.items())
    extra: dict[str, int] = {}
    notes: list[str] = []
    for label, got in short.items():
        n = planned[label]
        rate = max(got / n if n else 0.0, MIN_RATE)
        ask = min(math.ceil((keep - got) / rate * MARGIN), budget - n)
        if ask > 0 and rounds + 1 < KEEP_ROUNDS and not stalled:
            extra[label] = ask
            continue
        why = f"the budget ({budget} rows, --keep-budget {config.keep_budget:g})"
        if ask > 0 and stalled:
            why = "a round that added no row passing curation to a short label"
        elif ask > 0:
            why = f"the last of {KEEP_ROUNDS} rounds"
        notes.append(
            f"warning: label '{label}' has {got} of {keep} rows after {n} planned and "
            f"{why}: it trains on {got}"
        )
    outcome = {
        "keep": keep,
        "budget_per_label": budget,
        "rounds": rounds + 1,
        "per_label": {
            label: {"planned": n, "passed": passed.get(label, 0)} for label, n in planned.items()
        },
        "short": len(short),
        "notes": notes if not extra else [],
    }
    return extra, outcome
