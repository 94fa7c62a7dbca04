"""Turn a task into a plan: every request to send, fully determined by the seed.

The plan is built without loading an LLM, so it can be printed (`localgen plan`), hashed
(to recognise a run when resuming) and tested with no engine. Strategies, each a way of
asking (see `docs/generate.md`, "Strategies: which to pick"):

- zero-shot: context, label description, style and length.
- few-shot: k real examples of the label, to imitate without rewriting.
- contrastive: the real examples nearest to a sampled anchor ("similar to these"), and
  negatives ("different from these"): the nearest real examples of other labels, rows
  the user rejected and, for the second half of the requests, rows already generated.
  With `anchors` (examples to write close variants of, e.g. the ones a classifier gets
  wrong), every request is contrastive and the anchors take turns: `count` per anchor.
- attributes: one value drawn from each attribute pool of the label.
- hierarchical: a first pass writes a one-line summary, a second writes the text from it.
- from-documents: one of the user's unlabeled documents, for its domain and register
  (whatever its own label), and k real examples of the label where given.
- rewrite: one real example of the label, to say again with other details and wording;
  the label's real examples take turns.

The plan is a list of blocks (a label's rows of one strategy) and a function that builds
the request of any position; nothing is built until it is asked for, so a plan of a
billion rows costs what its counts cost. Most requests are complete when built (the
first pass: rows, and the hierarchical summaries, `drafts`). Requests whose prompt needs
first-pass outputs are `followups`, completed into requests by
`localgen.generation.generate` for the second pass. The plan does not call an engine and
does not validate outputs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from localgen.data import LabeledData
from localgen.errors import TaskError
from localgen.planning import strategies
from localgen.planning.fit import PromptFit
from localgen.planning.prompts import PromptLibrary
from localgen.planning.requests import Block, Plan, Rejected, Step
from localgen.planning.schema import RowSchema
from localgen.planning.task import (
    FROM_DOCUMENTS,
    NEEDS_EXAMPLES,
    STRATEGIES,
    Task,
    language_name,
    strategy_weights,
)

if TYPE_CHECKING:
    from localgen.vectors.encoder import TextEncoder


def split_count(n: int, weights: dict[str, float]) -> dict[str, int]:
    """Split n rows among strategies by weight (largest remainder; ties go to the first)."""
    total = sum(weights.values())
    exact = {s: n * w / total for s, w in weights.items()}
    out = {s: math.floor(v) for s, v in exact.items()}
    order = sorted(weights, key=lambda s: -(exact[s] - out[s]))  # stable: listed order on ties
    for s in order[: n - sum(out.values())]:
        out[s] += 1
    return out


def label_counts(
    task: Task, count: int | None, balance: str | int | None, seed_data: LabeledData | None
) -> tuple[dict[str, int], list[str]]:
    """Rows to generate per label: a flat count, or what brings each label to a target."""
    balance = balance if count is None else None  # an explicit count wins over the task file
    if balance is None:
        n = count if count is not None else task.generation.count
        if n <= 0:
            raise TaskError(f"the count per label must be positive, got {n}")
        return dict.fromkeys(task.label_names, n), []
    if seed_data is None:
        raise TaskError("balancing fills labels up given the real data: pass --seed-data FILE")
    real = {label: frame.height for label, frame in seed_data.by_label().items()}
    target = max(real.values()) if balance == "majority" else int(balance)
    counts = {label: max(0, target - real.get(label, 0)) for label in task.label_names}
    notes = [f"balance: target {target} rows per label (real + synthetic)"]
    notes += [
        f"label '{lab}' already has {real.get(lab, 0)} real rows: nothing to generate"
        for lab, n in counts.items()
        if n == 0
    ]
    if not any(counts.values()):
        raise TaskError(f"every label already has at least {target} real rows: nothing to do")
    return counts, notes


def _check_strategies(
    task: Task,
    weights: dict[str, float],
    seed_data: LabeledData | None,
    anchors: LabeledData | None,
    documents: pl.DataFrame | None,
) -> None:
    for name in weights:
        if name not in STRATEGIES:
            raise TaskError(f"unknown strategy '{name}'; choose from {', '.join(STRATEGIES)}")
    needy = [name for name in weights if name in NEEDS_EXAMPLES]
    if seed_data is None and needy:
        raise TaskError(f"the {needy[0]} strategy needs real examples: pass --seed-data FILE")
    if "attributes" in weights and not any(task.pools_for(lab) for lab in task.labels):
        raise TaskError(
            "the attributes strategy needs attribute pools: add an [attributes] "
            'table to the task file, e.g. tone = ["angry", "polite"]'
        )
    if FROM_DOCUMENTS in weights and (documents is None or documents.height == 0):
        raise TaskError(
            f"the {FROM_DOCUMENTS} strategy needs the user's documents: pass --documents FILE"
        )
    if anchors is not None and seed_data is None:
        raise TaskError("anchored generation needs real examples: pass --seed-data FILE")


def _anchored_counts(
    task: Task, per_anchor: int, anchors: LabeledData, seed_data: LabeledData
) -> tuple[dict[str, int], list[str], LabeledData]:
    """`per_anchor` rows per anchor; the anchors join the examples the neighbours are drawn
    from (each once)."""
    anchored = anchors.by_label()
    counts = {
        lab: per_anchor * anchored[lab].height if lab in anchored else 0 for lab in task.labels
    }
    notes = [f"anchors: {per_anchor} rows per anchor, {anchors.frame.height} anchors"]
    known = set(seed_data.frame["id"].to_list())
    extra = anchors.frame.filter(~anchors.frame["id"].is_in(list(known)))
    return counts, notes, LabeledData(pl.concat([seed_data.frame, extra]), seed_data.source, 0)


def _label_blocks(
    label: str,
    n: int,
    weights: dict[str, float],
    ctx: strategies.LabelContext,
    start: int,
    notes: list[str],
    index: int = 0,
) -> list[Block]:
    """The label's n rows as blocks, one per strategy in listed order, from plan position
    `start` and the label's row number `index`; a strategy that cannot run falls back to
    zero-shot, with a note."""
    blocks: list[Block] = []
    for name, share in split_count(n, weights).items():
        fallback = (name in NEEDS_EXAMPLES and ctx.examples is None) or (
            name == "attributes" and not ctx.pools
        )
        if fallback and share:
            why = "no real examples" if name != "attributes" else "no attribute pools"
            notes.append(f"label '{label}' has {why}: {share} {name} rows use zero-shot")
        strategy = "zero-shot" if fallback else name
        first_followup = ctx.first_followup(strategy, share)
        blocks.append(Block(label, strategy, start, index, share, first_followup))
        start, index = start + share, index + share
    return blocks


@dataclass(frozen=True)
class PlanSpec:
    """What a plan is built from besides the task; a field left at None takes the task
    file's setting."""

    seed: int = 0
    count: int | None = None  # rows per label
    strategy: str | list[str] | dict[str, float] | None = None  # names, or weights by name
    seed_data: LabeledData | None = None  # real rows: the examples prompts show
    prompts: PromptLibrary | None = None  # None: the packaged templates
    balance: str | int | None = None  # "majority" or a target, instead of count
    instructions: str = ""  # added to the task file's run-wide instructions
    rejects: Sequence[Rejected] | None = None  # rows the contrastive strategy shows as negatives
    encoder: TextEncoder | None = None  # None: the contrastive strategy loads the default
    anchors: LabeledData | None = None  # examples to write close variants of: count per anchor
    language: str | None = None  # the language rows are written in
    fit: PromptFit | None = None  # measures every prompt and fits it to the context
    more: Sequence[Mapping[str, int]] = ()  # rounds of rows per label added after the plan
    documents: pl.DataFrame | None = None  # (id, text) the from-documents strategy shows


def build_plan(task: Task, spec: PlanSpec = PlanSpec()) -> Plan:
    """Plan the requests of a run. With `spec.fit`, every prompt is measured and fitted to
    the context (`planning/fit.py`). `spec.more` extends the plan by rounds of rows per
    label, each after the last: the plan without them is a prefix of the plan with them
    (the same requests at the same positions), so a finished run can grow
    (`localgen run --keep`)."""
    seed, count, strategy, seed_data = spec.seed, spec.count, spec.strategy, spec.seed_data
    anchors, rejects, documents, fit = spec.anchors, spec.rejects, spec.documents, spec.fit
    gen = task.generation
    weights: dict[str, float] = strategy_weights(strategy) if strategy else gen.strategy
    if anchors is not None:
        if strategy and set(weights) != {"contrastive"}:
            raise TaskError("anchors are written about by the contrastive strategy only")
        weights = {"contrastive": 1.0}
    _check_strategies(task, weights, seed_data, anchors, documents)
    if anchors is not None and seed_data is not None:
        per_anchor = count if count is not None else gen.count
        counts, notes, seed_data = _anchored_counts(task, per_anchor, anchors, seed_data)
    else:
        counts, notes = label_counts(task, count, spec.balance or gen.balance, seed_data)
    if rejects and "contrastive" not in weights:
        notes.append("rejected rows are shown only by the contrastive strategy: unused here")
    if documents is not None and FROM_DOCUMENTS not in weights:
        notes.append(f"documents are shown only by the {FROM_DOCUMENTS} strategy: unused here")
        documents = None
    shared = strategies.Shared.build(
        task,
        seed_data,
        spec.prompts or PromptLibrary(),
        spec.instructions,
        list(rejects or []),
        anchors,
        spec.encoder,
        contrastive="contrastive" in weights,
        language=_language(spec.language or task.language),
        fit=fit,
        documents=documents,
    )
    contexts = {label: shared.for_label(label) for label in task.labels}
    blocks: list[Block] = []
    rounds: list[list[Block]] = []  # the blocks of the plan without `more`, then each round
    planned: dict[str, int] = dict.fromkeys(task.labels, 0)  # the labels' rows so far
    for extra in [counts, *spec.more]:
        if unknown := sorted(set(extra) - set(task.labels)):
            raise TaskError(f"unknown label '{unknown[0]}' in a round of rows")
        for label in task.labels:
            n = extra.get(label, 0)
            if rounds and not n:
                continue  # a label a round adds nothing to leaves the plan as it was
            start = blocks[-1].stop if blocks else 0
            ctx = contexts[label]
            blocks += _label_blocks(label, n, weights, ctx, start, notes, planned[label])
            planned[label] += n
        rounds.append(list(blocks))

    def make(position: int, block: Block, request_seed: int) -> Step:
        ctx = contexts[block.label]
        nth = position - block.start  # the row's number among the block's
        request = ctx.request(block.index + nth, block.strategy, request_seed)
        second = nth >= block.first_followup
        return strategies.STRATEGY[block.strategy](ctx, request, nth, second)

    definition = {
        "seed": seed,
        "task": task.model_dump(mode="json"),
        "seed_data": _frame_hash(seed_data),
        "anchors": _frame_hash(anchors),
        "rejects": [dataclasses.astuple(r) for r in rejects or []],
        "instructions": spec.instructions,
        "language": shared.language,
        "context": None if fit is None else fit.context,
    }
    if documents is not None:  # only then: the plans of earlier runs keep their fingerprints
        definition["documents"] = _frame_hash(documents, ("id", "text"))
    plan = Plan(
        seed=seed,
        notes=notes,
        limits=_limits(task, fit),
        blocks=blocks,
        make=make,
        definitions=[
            (len([b for b in these if b.count]), definition | {"blocks": _astuples(these)})
            for these in rounds
        ],
        fit=fit,
        more=[dict(extra) for extra in spec.more],
    )
    plan.check()  # a prompt that cannot be built fails here, before any engine work
    return plan


def _astuples(blocks: list[Block]) -> list[tuple[object, ...]]:
    return [dataclasses.astuple(b) for b in blocks]


def _frame_hash(
    data: LabeledData | pl.DataFrame | None, columns: tuple[str, ...] = ("id", "text", "label")
) -> str | None:
    """A hash of the examples a plan shows (id, text, label), in their order."""
    if data is None:
        return None
    frame = data.frame if isinstance(data, LabeledData) else data
    h = hashlib.sha256()
    for row in frame.select(*columns).iter_rows():
        h.update(json.dumps(row, ensure_ascii=False).encode())
    return h.hexdigest()


def _language(value: str | None) -> str | None:
    return None if value is None else language_name(value)


def _limits(task: Task, fit: PromptFit | None) -> str:
    """What bound each row gets: characters, and the tokens that hold the longest one."""
    gen = task.generation
    chars = gen.text_max_chars
    asked = f"{gen.max_words} words asked" + (
        "" if gen.max_chars is None else f", max_chars {chars}"
    )
    bound = RowSchema(task.label_names[0], chars).token_bound
    context = "" if fit is None else f"; the context holds {fit.context} tokens with the prompt"
    return f"rows: up to {chars} characters ({asked}), at most {bound} tokens each{context}"
