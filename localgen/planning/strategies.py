"""The seven strategies, one function each: how one request of a label is asked.

Every strategy gets the label's shared context, a request that has its key, seed and
sampling settings but no prompt yet, and the row's number among the label's rows of that
strategy, and returns a `Step`: the requests it adds to the
first pass, the hierarchical summaries (drafts) and the second-pass followups. All the
randomness of a request comes from `random.Random(request.seed)`, so a plan is
reproducible request by request, and any request can be built alone.
`localgen.planning.plan` decides which strategy each row uses; this module does not count
rows.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import polars as pl

from localgen.data import LabeledData
from localgen.planning.fit import PromptFit, cut
from localgen.planning.prompts import PromptLibrary
from localgen.planning.requests import (
    SUMMARY_SUFFIX,
    Followup,
    Rejected,
    Request,
    Step,
    render,
)
from localgen.planning.schema import RowSchema
from localgen.planning.task import Task
from localgen.vectors.encoder import TextEncoder
from localgen.vectors.neighbours import top_k

# A shown document is cut to this many characters: its domain and register show in its
# opening, and a long one would crowd the label's examples out of a small context.
DOCUMENT_CHARS = 600


class Neighbours:
    """Nearest real examples by cosine similarity of sentence embeddings."""

    def __init__(self, data: LabeledData, encoder: TextEncoder) -> None:
        self.frame = data.frame
        self.vectors = encoder.encode(data.frame["text"].to_list())
        labels = data.frame["label"].to_list()
        self.rows_of: dict[str, np.ndarray] = {
            lab: np.array([i for i, x in enumerate(labels) if x == lab]) for lab in set(labels)
        }
        self.labels = np.array(labels)
        self.row_of_id = {row_id: i for i, row_id in enumerate(data.frame["id"].to_list())}

    def nearest(self, query: np.ndarray, rows: np.ndarray, k: int) -> list[int]:
        """The k of `rows` closest to `query`, closest first."""
        if len(rows) == 0:
            return []
        order, _ = top_k(query[None, :], self.vectors[rows], k)
        return [int(rows[i]) for i in order[0]]

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


@dataclass(frozen=True)
class Shared:
    """What every label's requests share: the task, templates, examples and negatives."""

    task: Task
    prompts: PromptLibrary
    run_lines: list[str]  # the task file's and the run's extra instructions
    examples: dict[str, pl.DataFrame]  # real examples by label
    rejects: list[Rejected]
    anchors: dict[str, pl.DataFrame] | None  # examples to write variants of, by label
    neighbours: Neighbours | None  # for the contrastive strategy
    language: str | None  # the language's English name, asked for in every prompt
    fit: PromptFit | None  # measures prompts against the context; None: not measured
    documents: pl.DataFrame | None = None  # the user's unlabeled documents: id, text

    @classmethod
    def build(
        cls,
        task: Task,
        seed_data: LabeledData | None,
        prompts: PromptLibrary,
        instructions: str,
        rejects: list[Rejected],
        anchors: LabeledData | None,
        encoder: TextEncoder | None,
        contrastive: bool,
        language: str | None = None,
        fit: PromptFit | None = None,
        documents: pl.DataFrame | None = None,
    ) -> Shared:
        neighbours = None  # only the contrastive strategy needs the encoder
        if contrastive and seed_data is not None:
            if encoder is None:
                from localgen.vectors.encoder import default_encoder

                encoder = default_encoder()
            neighbours = Neighbours(seed_data, encoder)
        gen = task.generation
        return cls(
            task=task,
            prompts=prompts,
            run_lines=[line for line in (gen.instructions, instructions) if line.strip()],
            examples=seed_data.by_label() if seed_data is not None else {},
            rejects=rejects,
            anchors=anchors.by_label() if anchors is not None else None,
            neighbours=neighbours,
            language=language,
            fit=fit,
            documents=None if documents is None else documents.select("id", "text"),
        )

    def for_label(self, label: str) -> LabelContext:
        gen, spec = self.task.generation, self.task.labels[label]
        examples = self.examples.get(label)
        lines = [*self.run_lines, spec.instructions] if spec.instructions else self.run_lines
        return LabelContext(
            shared=self,
            label=label,
            pools=self.task.pools_for(label),
            examples=examples if examples is not None and examples.height > 0 else None,
            schema=RowSchema(label, gen.text_max_chars),
            variables={
                "context": self.task.context,
                "label": label,
                "description": spec.description,
                "style": gen.style,
                "max_words": gen.max_words,
                "instructions": lines,
                "language": self.language,
            },
        )


@dataclass
class LabelContext:
    """One label's share of the plan, while its requests are made."""

    shared: Shared
    label: str
    pools: dict[str, list[str]]
    examples: pl.DataFrame | None
    schema: RowSchema
    variables: dict[str, Any]  # the template variables every strategy fills in

    def first_followup(self, strategy: str, count: int) -> int:
        """How many of a block of `count` rows of `strategy` are asked in the first pass:
        the rest wait for its outputs."""
        if strategy == "hierarchical":
            return 0
        if strategy == "contrastive" and self.shared.task.generation.contrastive.earlier:
            return math.ceil(count / 2)
        return count

    def request(self, index: int, strategy: str, seed: int) -> Request:
        """The label's request number `index`, before its strategy writes the prompt."""
        gen = self.shared.task.generation
        return Request(
            key=f"{self.label}-{index:06d}",
            label=self.label,
            strategy=strategy,
            template=strategy,
            template_hash="",
            prompt="",
            schema=self.schema,
            temperature=gen.temperature,
            top_p=gen.top_p,
            seed=seed,
        )

    def rendered(self, request: Request, variables: dict[str, Any]) -> Step:
        """A first-pass request with its template rendered (and fitted to the context)."""
        template = self.shared.prompts.get(request.template)
        request = replace(request, template_hash=template.hash)
        return Step(requests=[render(template, request, variables, self.shared.fit)])

    def followup(self, request: Request, variables: dict[str, Any], **links: Any) -> Followup:
        template = self.shared.prompts.get(request.template)
        request = replace(request, template_hash=template.hash)
        return Followup(request, template, variables, fit=self.shared.fit, **links)


def zero_shot(ctx: LabelContext, request: Request, nth: int, second: bool) -> Step:
    """Context, label description, style and length."""
    return ctx.rendered(request, dict(ctx.variables))


def few_shot(ctx: LabelContext, request: Request, nth: int, second: bool) -> Step:
    """k real examples of the label, to imitate without rewriting."""
    assert ctx.examples is not None, "the plan falls back to zero-shot without examples"
    pick = random.Random(request.seed)
    k = min(ctx.shared.task.generation.few_shot_k, ctx.examples.height)
    shown = ctx.examples[pick.sample(range(ctx.examples.height), k)]
    return ctx.rendered(request, ctx.variables | {"examples": shown.to_dicts()})


def _with_attributes(
    ctx: LabelContext, request: Request, pick: random.Random
) -> tuple[Request, dict[str, Any]]:
    """One value drawn from each of the label's attribute pools (none without pools)."""
    if not ctx.pools:
        return request, dict(ctx.variables)
    drawn = {name: pick.choice(values) for name, values in ctx.pools.items()}
    return replace(request, attributes=drawn), ctx.variables | {"attributes": list(drawn.items())}


def attributes(ctx: LabelContext, request: Request, nth: int, second: bool) -> Step:
    """One value from each attribute pool of the label."""
    request, variables = _with_attributes(ctx, request, random.Random(request.seed))
    return ctx.rendered(request, variables)


def hierarchical(ctx: LabelContext, request: Request, nth: int, second: bool) -> Step:
    """A first pass writes a one-line summary, a second writes the text from it."""
    request, variables = _with_attributes(ctx, request, random.Random(request.seed))
    settings = ctx.shared.task.generation.hierarchical
    draft = ctx.shared.prompts.get("hierarchical-summary")
    summary_key = request.key + SUMMARY_SUFFIX
    summary = replace(
        request,
        key=summary_key,
        template=draft.name,
        template_hash=draft.hash,
        prompt=draft.render(**variables, summary_words=settings.summary_words),
        schema=RowSchema(ctx.label, settings.summary_max_chars),
    )
    return Step(
        drafts=[summary], followups=[ctx.followup(request, variables, summary_key=summary_key)]
    )


def contrastive(ctx: LabelContext, request: Request, nth: int, second: bool) -> Step:
    """The real examples nearest to an anchor ("similar to these") and negatives
    ("different from these"): the nearest examples of other labels, rejected rows and, for
    the second half of the label's requests, rows the first pass wrote."""
    neighbours = ctx.shared.neighbours
    assert neighbours is not None, "the plan builds neighbours for the contrastive strategy"
    settings = ctx.shared.task.generation.contrastive
    pick = random.Random(request.seed)
    anchor_row = None
    if ctx.shared.anchors is not None:  # the anchors take turns
        ids = ctx.shared.anchors[ctx.label]["id"].to_list()
        anchor_row = neighbours.row_of_id[ids[nth % len(ids)]]
    pos, near = neighbours.pick(ctx.label, pick, settings.positives, settings.boundary, anchor_row)
    frame = neighbours.frame
    own_rejects = [r for r in ctx.shared.rejects if r.label in (None, ctx.label)]
    rejected = pick.sample(own_rejects, min(settings.rejected, len(own_rejects)))
    variables = ctx.variables | {
        "examples": frame[pos].to_dicts(),
        "boundary": frame[near].to_dicts(),
        "rejected": [{"id": r.id, "text": r.text} for r in rejected],
        "earlier": [],
    }
    # What is picked; rendering records what the prompt, fitted to the context, shows.
    request = replace(
        request,
        positive_ids=tuple(frame["id"][pos]),
        negative_ids=tuple(frame["id"][near]) + tuple(r.id for r in rejected),
    )
    if second:
        variables.pop("earlier")  # the second pass fills it in
        return Step(followups=[ctx.followup(request, variables, earlier=settings.earlier)])
    return ctx.rendered(request, variables)


def from_documents(ctx: LabelContext, request: Request, nth: int, second: bool) -> Step:
    """One of the user's unlabeled documents, for its domain, vocabulary and register,
    whatever its own label (DAIR.AI's document-to-query idea, for classification), and k
    real examples of the label where there are some."""
    documents = ctx.shared.documents
    assert documents is not None, "the plan checks that documents were given"
    pick = random.Random(request.seed)
    row = documents.row(pick.randrange(documents.height), named=True)
    shown: list[dict[str, Any]] = []
    if ctx.examples is not None:
        k = min(ctx.shared.task.generation.few_shot_k, ctx.examples.height)
        shown = ctx.examples[pick.sample(range(ctx.examples.height), k)].to_dicts()
    document = {"id": row["id"], "text": cut(row["text"], DOCUMENT_CHARS)}
    return ctx.rendered(request, ctx.variables | {"document": [document], "examples": shown})


def rewrite(ctx: LabelContext, request: Request, nth: int, second: bool) -> Step:
    """One real example of the label, to say again differently: the same kind of text and
    label, other details, names and wording (Cegin et al., NAACL 2025: at 5 to 20 real rows
    per label, rewrites of each real row are where LLM augmentation beats the older kinds).
    The label's real rows take turns as the source, so each is rewritten as often as the
    others."""
    assert ctx.examples is not None, "the plan falls back to zero-shot without examples"
    row = ctx.examples.row(nth % ctx.examples.height, named=True)
    source = {"id": row["id"], "text": row["text"]}
    return ctx.rendered(request, ctx.variables | {"source": [source]})


# Each builds one row's step; `nth` is the row's number among its block's rows (the label's
# rows of the strategy in one round), `second` whether it waits for the first pass.
STRATEGY: dict[str, Callable[[LabelContext, Request, int, bool], Step]] = {
    "zero-shot": zero_shot,
    "few-shot": few_shot,
    "contrastive": contrastive,
    "attributes": attributes,
    "hierarchical": hierarchical,
    "from-documents": from_documents,
    "rewrite": rewrite,
}
