"""Turn a task into a plan: every request to send, fully determined by the seed.

The plan is built without loading an LLM, so it can be printed (`localgen plan`), hashed
(to recognise a run when resuming) and tested with no engine. Strategies, each a way of
asking (see `../README.md`, "Strategies"):

- zero-shot: context, label description, style and length.
- few-shot: k real examples of the label, to imitate without rewriting.
- contrastive: the real examples nearest to a sampled anchor ("similar to these"), and
  negatives ("different from these"): the nearest real examples of other labels, rows
  the user rejected and, for the second half of the requests, rows already generated.
  With `anchors` (examples to write close variants of, e.g. the ones a classifier gets
  wrong), every request is contrastive and the anchors take turns: `count` per anchor.
- attributes: one value drawn from each attribute pool of the label.
- hierarchical: a first pass writes a one-line summary, a second writes the text from it.

Most requests are known now (`requests`, plus the hierarchical summaries in `drafts`):
they form the first pass, one batch. Requests whose prompt needs first-pass outputs are
`followups`, completed into requests by `localgen.generation.generate` for the second pass. The
plan does not call an engine and does not validate outputs.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from localgen.data import LabeledData
from localgen.errors import TaskError
from localgen.planning.prompts import PromptLibrary, Template
from localgen.planning.schema import RowSchema
from localgen.planning.task import NEEDS_EXAMPLES, STRATEGIES, Task, strategy_weights

if TYPE_CHECKING:
    from localgen.vectors.encoder import Encoder

SUMMARY_SUFFIX = "/summary"  # key of a hierarchical first-pass request: "<row key>/summary"


@dataclass(frozen=True)
class Rejected:
    """A text the user does not want more of; `label` None means: for every label."""

    id: str
    text: str
    label: str | None


@dataclass(frozen=True)
class Request:
    """Everything needed to ask for one output, and to record how it was asked."""

    key: str  # stable id of the request within its plan, e.g. "billing-000007"
    label: str
    strategy: str
    template: str
    template_hash: str
    prompt: str
    schema: RowSchema
    temperature: float
    top_p: float
    seed: int  # the RNG seed of this request: sampling and example choice

    @property
    def max_tokens(self) -> int:
        return self.schema.max_tokens

    attributes: dict[str, str] = field(default_factory=dict)
    positive_ids: tuple[str, ...] = ()
    negative_ids: tuple[str, ...] = ()
    intermediate: str | None = None  # hierarchical: the summary the text was written from


@dataclass(frozen=True)
class Followup:
    """A second-pass request: its prompt needs outputs of the first pass."""

    request: Request  # complete but for the prompt and what `complete` adds
    template: Template
    variables: dict[str, Any]  # the template's variables, but for the first-pass outputs
    summary_key: str | None = None  # hierarchical: the draft whose summary it expands
    earlier: int = 0  # contrastive: rows of the label already generated, to show

    @property
    def key(self) -> str:
        return self.request.key

    def complete(self, summary: str | None, earlier: list[tuple[str, str]]) -> Request:
        """The request, given the summary and the (id, text) of first-pass rows of its label."""
        shown = earlier
        if len(earlier) > self.earlier:
            shown = random.Random(self.request.seed).sample(earlier, self.earlier)
        prompt = self.template.render(
            **self.variables, summary=summary or "", earlier=[text for _, text in shown]
        )
        return replace(
            self.request,
            prompt=prompt,
            intermediate=summary,
            negative_ids=self.request.negative_ids + tuple(i for i, _ in shown),
        )


@dataclass(frozen=True)
class Plan:
    requests: list[Request]  # first pass: rows
    seed: int
    notes: list[str]  # things the user should know (e.g. a label fell back to zero-shot)
    drafts: list[Request] = field(default_factory=list)  # first pass: summaries, not rows
    followups: list[Followup] = field(default_factory=list)  # second pass: rows

    @property
    def rows(self) -> int:
        """Rows planned (drafts are not rows)."""
        return len(self.requests) + len(self.followups)

    @property
    def row_keys(self) -> list[str]:
        return [r.key for r in self.requests] + [f.key for f in self.followups]

    @property
    def fingerprint(self) -> str:
        """Hash of every prompt, schema and sampling setting: equal plans give equal hashes."""
        h = hashlib.sha256()
        items = [(r, r.prompt) for r in self.requests + self.drafts] + [
            (f.request, [f.template.hash, f.variables, f.earlier]) for f in self.followups
        ]
        for r, prompt in items:
            fields = [r.key, prompt, r.schema.json_schema, r.max_tokens, r.temperature, r.top_p]
            h.update(json.dumps([*fields, r.seed], sort_keys=True).encode())
        return h.hexdigest()[:16]

    def counts(self) -> dict[str, dict[str, int]]:
        """Planned rows per label and strategy."""
        rows = self.requests + [f.request for f in self.followups]
        out: dict[str, dict[str, int]] = {}
        for (label, strategy), n in Counter((r.label, r.strategy) for r in rows).items():
            out.setdefault(label, {})[strategy] = n
        return out


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


class _Neighbours:
    """Nearest real examples by cosine similarity of sentence embeddings."""

    def __init__(self, data: LabeledData, encoder: Encoder) -> None:
        self.frame = data.frame
        self.vectors = encoder.encode(data.frame["text"].to_list())
        labels = data.frame["label"].to_list()
        self.rows_of: dict[str, np.ndarray] = {
            lab: np.array([i for i, x in enumerate(labels) if x == lab]) for lab in set(labels)
        }
        self.labels = np.array(labels)

    def nearest(self, query: np.ndarray, rows: np.ndarray, k: int) -> list[int]:
        if k <= 0 or len(rows) == 0:
            return []
        sims = self.vectors[rows] @ query
        order = np.argsort(-sims, kind="stable")[:k]
        return [int(rows[i]) for i in order]

    def pick(
        self,
        label: str,
        rng: random.Random,
        positives: int,
        boundary: int,
        anchor_row: int | None = None,
    ) -> tuple[list[int], list[int]]:
        """Positives around an anchor of the label (`anchor_row`, else a random one); the
        closest rows of other labels."""
        own = self.rows_of[label]
        anchor = self.vectors[own[rng.randrange(len(own))] if anchor_row is None else anchor_row]
        pos = self.nearest(anchor, own, positives)  # the anchor itself comes first
        centre = self.vectors[pos].mean(axis=0)
        others = np.flatnonzero(self.labels != label)
        return pos, self.nearest(centre, others, boundary)


def _followup(
    prompts: PromptLibrary, request: Request, variables: dict[str, Any], **links: Any
) -> Followup:
    template = prompts.get(request.template)
    return Followup(replace(request, template_hash=template.hash), template, variables, **links)


def build_plan(
    task: Task,
    *,
    seed: int = 0,
    count: int | None = None,
    strategy: str | list[str] | dict[str, float] | None = None,
    seed_data: LabeledData | None = None,
    prompts: PromptLibrary | None = None,
    balance: str | int | None = None,
    instructions: str = "",
    rejects: list[Rejected] | None = None,
    encoder: Encoder | None = None,
    anchors: LabeledData | None = None,
) -> Plan:
    """Plan the requests of a run; arguments left at None take the task file's setting."""
    gen = task.generation
    weights: dict[str, float] = strategy_weights(strategy) if strategy else gen.strategy
    if anchors is not None:
        if strategy and set(weights) != {"contrastive"}:
            raise TaskError("anchors are written about by the contrastive strategy only")
        weights = {"contrastive": 1.0}
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
    if anchors is not None:
        if seed_data is None:
            raise TaskError("anchored generation needs real examples: pass --seed-data FILE")
        per_anchor = count if count is not None else gen.count
        anchored = anchors.by_label()
        counts = {
            lab: per_anchor * anchored[lab].height if lab in anchored else 0 for lab in task.labels
        }
        notes = [f"anchors: {per_anchor} rows per anchor, {anchors.frame.height} anchors"]
        # The anchors join the examples the neighbours are drawn from (each once).
        known = set(seed_data.frame["id"].to_list())
        extra = anchors.frame.filter(~anchors.frame["id"].is_in(list(known)))
        seed_data = LabeledData(pl.concat([seed_data.frame, extra]), seed_data.source, 0)
    else:
        counts, notes = label_counts(task, count, balance or gen.balance, seed_data)
    if rejects and "contrastive" not in weights:
        notes.append("rejected rows are shown only by the contrastive strategy: unused here")
    prompts = prompts or PromptLibrary()
    examples = seed_data.by_label() if seed_data is not None else {}
    neighbours = None
    if "contrastive" in weights and seed_data is not None:
        from localgen.vectors.encoder import default_encoder

        neighbours = _Neighbours(seed_data, encoder or default_encoder())
        row_of_id = {row_id: i for i, row_id in enumerate(seed_data.frame["id"].to_list())}
    run_lines = [line for line in (gen.instructions, instructions) if line.strip()]
    rng = random.Random(seed)
    plan = Plan(requests=[], seed=seed, notes=notes)
    for label, spec in task.labels.items():
        pools = task.pools_for(label)
        pool = examples.get(label)
        has_examples = pool is not None and pool.height > 0
        shares = split_count(counts[label], weights)
        chosen = []
        for name, n in shares.items():
            fallback = (name in NEEDS_EXAMPLES and not has_examples) or (
                name == "attributes" and not pools
            )
            if fallback and n:
                why = "no real examples" if name != "attributes" else "no attribute pools"
                notes.append(f"label '{label}' has {why}: {n} {name} rows use zero-shot")
            chosen += ["zero-shot" if fallback else name] * n
        base = {
            "context": task.context,
            "label": label,
            "description": spec.description,
            "style": gen.style,
            "max_words": gen.max_words,
            "instructions": [*run_lines, spec.instructions] if spec.instructions else run_lines,
        }
        schema = RowSchema(label, gen.text_max_chars)
        n_contrastive = chosen.count("contrastive")
        contrastive_seen = 0
        for i, name in enumerate(chosen):
            request_seed = rng.randrange(2**31)
            pick = random.Random(request_seed)
            request = Request(
                key=f"{label}-{i:06d}",
                label=label,
                strategy=name,
                template=name,
                template_hash="",
                prompt="",
                schema=schema,
                temperature=gen.temperature,
                top_p=gen.top_p,
                seed=request_seed,
            )
            variables = dict(base)
            if name == "few-shot":
                assert pool is not None
                rows = pick.sample(range(pool.height), min(gen.few_shot_k, pool.height))
                shown = pool[rows]
                variables["examples"] = shown.to_dicts()
                request = replace(request, positive_ids=tuple(shown["id"]))
            if name in ("attributes", "hierarchical") and pools:
                attributes = {pool_name: pick.choice(values) for pool_name, values in pools.items()}
                variables["attributes"] = list(attributes.items())
                request = replace(request, attributes=attributes)
            if name == "contrastive":
                assert neighbours is not None
                c = gen.contrastive
                anchor_row = None
                if anchors is not None:
                    ids = anchored[label]["id"].to_list()
                    anchor_row = row_of_id[ids[contrastive_seen % len(ids)]]
                pos, near = neighbours.pick(label, pick, c.positives, c.boundary, anchor_row)
                frame = neighbours.frame
                own_rejects = [r for r in rejects or [] if r.label in (None, label)]
                rejected = pick.sample(own_rejects, min(c.rejected, len(own_rejects)))
                variables.update(
                    examples=frame[pos].to_dicts(),
                    boundary=frame[near].to_dicts(),
                    rejected=[r.text for r in rejected],
                    earlier=[],
                )
                request = replace(
                    request,
                    positive_ids=tuple(frame["id"][pos]),
                    negative_ids=tuple(frame["id"][near]) + tuple(r.id for r in rejected),
                )
                # The first half runs in the first pass; the second half is also shown a
                # sample of what the first pass wrote for the label (the diversity prompt).
                contrastive_seen += 1
                if c.earlier and contrastive_seen > math.ceil(n_contrastive / 2):
                    variables.pop("earlier")
                    plan.followups.append(_followup(prompts, request, variables, earlier=c.earlier))
                    continue
            if name == "hierarchical":
                words = gen.hierarchical.summary_words
                draft = prompts.get("hierarchical-summary")
                summary_schema = RowSchema(label, gen.hierarchical.summary_max_chars)
                plan.drafts.append(
                    replace(
                        request,
                        key=request.key + SUMMARY_SUFFIX,
                        template=draft.name,
                        template_hash=draft.hash,
                        prompt=draft.render(**variables, summary_words=words),
                        schema=summary_schema,
                    )
                )
                summary_key = request.key + SUMMARY_SUFFIX
                plan.followups.append(
                    _followup(prompts, request, variables, summary_key=summary_key)
                )
                continue
            template = prompts.get(name)
            plan.requests.append(
                replace(
                    request,
                    template_hash=template.hash,
                    prompt=template.render(**variables),
                )
            )
    return plan
