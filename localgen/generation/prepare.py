"""Everything a generation needs before its run folder, each resolved and checked once:
the task and its input files read, the engine settings checked, the model resolved, the
context and the prompt fit measured, the plan built. `localgen plan`, `generate`,
`run --keep` (a round each) and `boost` (a round each) start here.

It loads no LLM and writes nothing: `localgen.generation.generate` runs what it prepared.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from localgen.config import EngineSettings, GenerateConfig
from localgen.data import LabeledData, read_documents, read_task_data
from localgen.engines.base import Engine
from localgen.engines.loader import check_settings, resolve_engine_model
from localgen.generation.rejects import read_rejects
from localgen.models.context import context_length, token_counter
from localgen.models.resolve import ModelRef, prepared_model
from localgen.planning.fit import PromptFit
from localgen.planning.plan import PlanSpec, build_plan
from localgen.planning.requests import Plan
from localgen.planning.task import Task, load_task
from localgen.progress import Say, silent

LOCAL_ENGINES = ("vllm", "transformers")  # engines that run a model folder in this process


@dataclass(frozen=True)
class Prepared:
    """A generation ready to run: its config (with the context resolved), task, real
    rows, plan and model."""

    config: GenerateConfig
    task: Task
    seed_data: LabeledData | None
    plan: Plan
    model: ModelRef | None  # None only for a plan printed before the built-in model exists

    @property
    def notes(self) -> list[str]:
        """What the person who runs it should know: the plan's notes and its samples'."""
        return self.plan.notes + self.plan.sample_notes()


def prepare(
    config: GenerateConfig,
    say: Say = silent,
    *,
    model: ModelRef | None = None,
    engine: Engine | None = None,
    resolve: bool = True,
) -> Prepared:
    """Read, check, resolve and plan. `model` and `engine`: already resolved or running
    (a later round reuses them). `resolve=False` (`localgen plan`, `--dry-run`) takes the
    model only where it is ready to read: it converts nothing and asks no server."""
    task = load_task(config.task_path)  # bad input fails before any model work
    columns = (config.text_column, config.label_column, task.label_names)
    seed_data = None if config.seed_data is None else read_task_data(config.seed_data, *columns)
    anchors = None if config.anchors is None else read_task_data(config.anchors, *columns)
    documents = None
    if config.documents is not None:
        documents = read_documents(config.documents, config.text_column)[0]
    rejects = None if config.reject is None else read_rejects(config.reject)
    check_settings(config.engine)
    if model is None:  # resolved before the run folder exists: a bad model writes nothing
        if resolve:
            model = resolve_engine_model(config.engine, config.model, say)
        elif config.engine.name in LOCAL_ENGINES:
            model = prepared_model(config.model)
    context, count = measure(config.engine, model, engine)
    if context is not None:
        engine_settings = dataclasses.replace(config.engine, max_model_len=context)
        config = dataclasses.replace(config, engine=engine_settings)
    fit = None if context is None or count is None else PromptFit(count, context)
    spec = PlanSpec(
        seed=config.seed,
        count=config.count,
        strategy=list(config.strategy),
        seed_data=seed_data,
        balance=config.balance,
        instructions=config.instructions,
        rejects=rejects,
        anchors=anchors,
        language=config.language,
        fit=fit,
        more=config.more,
        documents=documents,
    )
    return Prepared(config, task, seed_data, build_plan(task, spec), model)


def measure(
    settings: EngineSettings, model: ModelRef | None, engine: Engine | None = None
) -> tuple[int | None, Callable[[str], int] | None]:
    """What prompts are measured against, where the model is a local folder this process
    runs (else None, None): its context (the running engine's, else --max-model-len, else
    the model's own) and its tokenizer's count (None without a tokenizer)."""
    if model is None or settings.name not in LOCAL_ENGINES:
        return None, None
    context = (engine.context if engine is not None else None) or context_length(
        settings.max_model_len, model.path
    )
    return context, token_counter(model.path)
