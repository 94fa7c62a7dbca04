"""Turn a task into a plan: one request per row to generate, fully determined by the seed.

The plan is built without loading a model, so it can be printed (`--dry-run`), hashed
(to recognise a run when resuming) and tested with no engine. It does not call an engine
and does not validate outputs; see `localgen.generate`.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field

import polars as pl

from localgen.data import LabeledData
from localgen.errors import TaskError
from localgen.prompts import PromptLibrary
from localgen.schema import RowSchema
from localgen.task import Task


@dataclass(frozen=True)
class Request:
    """Everything needed to ask for one row, and to record how it was asked."""

    key: str  # stable id of the request within its plan, e.g. "billing-00007"
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


@dataclass(frozen=True)
class Plan:
    requests: list[Request]
    seed: int
    notes: list[str]  # things the user should know (e.g. a label fell back to zero-shot)

    @property
    def fingerprint(self) -> str:
        """Hash of every prompt, schema and sampling setting: equal plans give equal hashes."""
        h = hashlib.sha256()
        for r in self.requests:
            h.update(
                json.dumps(
                    [
                        r.key,
                        r.prompt,
                        r.schema.json_schema,
                        r.max_tokens,
                        r.temperature,
                        r.top_p,
                        r.seed,
                    ],
                    sort_keys=True,
                ).encode()
            )
        return h.hexdigest()[:16]

    def counts(self) -> dict[str, dict[str, int]]:
        """Planned rows per label and strategy."""
        out: dict[str, dict[str, int]] = {}
        for (label, strategy), n in Counter((r.label, r.strategy) for r in self.requests).items():
            out.setdefault(label, {})[strategy] = n
        return out


def build_plan(
    task: Task,
    *,
    seed: int = 0,
    count: int | None = None,
    strategy: str | None = None,
    seed_data: LabeledData | None = None,
    prompts: PromptLibrary | None = None,
) -> Plan:
    """Plan `count` requests per label (the task's count by default)."""
    gen = task.generation
    strategy = strategy or gen.strategy
    count = count if count is not None else gen.count
    if count <= 0:
        raise TaskError(f"the count per label must be positive, got {count}")
    if strategy == "few-shot" and seed_data is None:
        raise TaskError("the few-shot strategy needs real examples: pass --seed-data FILE")
    prompts = prompts or PromptLibrary()
    examples = seed_data.by_label() if seed_data is not None else {}
    rng = random.Random(seed)
    requests: list[Request] = []
    notes: list[str] = []
    max_chars = gen.text_max_chars
    for label, spec in task.labels.items():
        label_strategy = strategy
        pool = examples.get(label)
        if strategy == "few-shot" and (pool is None or pool.height == 0):
            # Generating a label with no real example is exactly what balancing needs,
            # so fall back rather than fail; the rows say which strategy produced them.
            label_strategy = "zero-shot"
            notes.append(f"label '{label}' has no real examples: using zero-shot for it")
        template = prompts.get(label_strategy)
        schema = RowSchema(label, max_chars)
        for i in range(count):
            request_seed = rng.randrange(2**31)
            shown: pl.DataFrame | None = None
            if label_strategy == "few-shot" and pool is not None:
                k = min(gen.few_shot_k, pool.height)
                picks = random.Random(request_seed).sample(range(pool.height), k)
                shown = pool[picks]
            prompt = template.render(
                context=task.context,
                label=label,
                description=spec.description,
                style=gen.style,
                max_words=gen.max_words,
                examples=shown.to_dicts() if shown is not None else [],
            )
            requests.append(
                Request(
                    key=f"{label}-{i:06d}",
                    label=label,
                    strategy=label_strategy,
                    template=template.name,
                    template_hash=template.hash,
                    prompt=prompt,
                    schema=schema,
                    temperature=gen.temperature,
                    top_p=gen.top_p,
                    seed=request_seed,
                    positive_ids=tuple(shown["id"].to_list()) if shown is not None else (),
                )
            )
    return Plan(requests=requests, seed=seed, notes=notes)
