"""Option groups that hand a command the settings object they describe.

A group decorator (`planned`, `engine_options`, `train_options`) declares
its options and replaces them, in the command's arguments, by the typed settings they
make: `planned: GenerateConfig`, `engine: EngineSettings`, `settings: TrainSettings`. A
group that needs a seed reads the command's own `--seed`. Defaults come from
`localgen.config`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from localgen.cli.options import (
    F,
    api_key_file_option,
    apply,
    backend_option,
    columns,
    data_file,
    instructions_option,
    language_option,
    max_model_len_option,
    rows_options,
    run_seed_option,
    task_argument,
    tensor_parallel_option,
)
from localgen.config import (
    METHODS,
    SEED,
    EngineSettings,
    GenerateConfig,
    TrainSettings,
    parse_weight,
)


def _group(
    options: list[Callable[[F], F]], name: str, make: Callable[..., Any], owns_seed: bool = False
) -> Any:
    """Declare `options`; the command receives `name=make(**their values)` instead. `make`
    also gets the command's --seed (one of `options` when `owns_seed`)."""
    keys = [k for k in inspect.signature(make).parameters if owns_seed or k != "seed"]

    def decorator(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {key: kwargs.pop(key) for key in keys}
            if not owns_seed:
                values["seed"] = click.get_current_context().params.get("seed", SEED)
            kwargs[name] = make(**values)
            return func(*args, **kwargs)

        return apply(*options)(wrapper)  # type: ignore[arg-type]

    return decorator


def _planned(
    task_file: Path,
    count: int | None,
    strategies: tuple[str, ...],
    balance: str | int | None,
    seed_data: Path | None,
    text_column: str,
    label_column: str,
    reject: Path | None,
    anchors: Path | None,
    documents: Path | None,
    instructions: str,
    language: str | None,
    seed: int,
) -> GenerateConfig:
    # `plan` writes nothing: the run folder is filled in by the command that has one.
    if documents is not None:
        from localgen.documents.label import documents_source

        documents = documents_source(documents)
    return GenerateConfig(
        task_path=task_file,
        out=Path("."),
        count=count,
        strategy=strategies,
        balance=balance,
        seed_data=seed_data,
        text_column=text_column,
        label_column=label_column,
        reject=reject,
        anchors=anchors,
        documents=documents,
        instructions=instructions,
        language=language,
        seed=seed,
    )


planned = _group(
    [
        task_argument,
        rows_options,
        data_file(
            "--seed-data",
            "Real labeled examples (CSV, JSONL or Parquet): shown by few-shot and "
            "contrastive, counted by --balance.",
        ),
        columns("--seed-data"),
        data_file(
            "--reject",
            "Rows you rejected (a .txt of texts or row ids, or a table with a text or id "
            "column): the contrastive strategy asks for something different.",
        ),
        data_file(
            "--anchors",
            "Real examples to write close variants of, with their label (same columns as "
            "--seed-data): every request is contrastive, -n rows per anchor.",
        ),
        data_file(
            "--documents",
            "Your unlabeled documents (a table with a text column, a .txt of one a line, a "
            "folder of .txt, or a folder localgen label wrote): the from-documents strategy "
            "shows one in each prompt.",
        ),
        instructions_option,
        language_option,
        run_seed_option,
    ],
    "planned",
    _planned,
    owns_seed=True,
)


def _engine(
    engine_name: str,
    backend: str | None,
    max_model_len: int | None,
    base_url: str | None,
    allow_hosts: tuple[str, ...],
    api_key_file: Path | None,
    ca_cert: Path | None,
    concurrency: int,
    tensor_parallel_size: int,
    replicas: int,
    ray_address: str | None,
    seed: int,
) -> EngineSettings:
    from localgen.engines.loader import check_settings

    settings = EngineSettings(
        name=engine_name,
        backend=backend,
        max_model_len=max_model_len,
        seed=seed,
        base_url=base_url,
        allow_hosts=tuple(dict.fromkeys(allow_hosts)),
        api_key_file=api_key_file,
        ca_cert=ca_cert,
        concurrency=concurrency,
        tensor_parallel_size=tensor_parallel_size,
        replicas=replicas,
        ray_address=ray_address,
    )
    check_settings(settings)  # a bad engine, backend or server URL fails before any work
    return settings


engine_options = _group(
    [
        click.option(
            "--engine",
            "engine_name",
            type=click.Choice(["vllm", "transformers", "openai", "fake"]),
            envvar="LOCALGEN_ENGINE",
            default=EngineSettings.name,
            show_default=True,
            help="vllm: fast, batched, in this process. transformers: Outlines on plain "
            "transformers. openai: an OpenAI-compatible server (--base-url), e.g. `localgen "
            "serve`; --model is then the served model's name. fake: no model, canned rows "
            "(tests and overhead benchmarks). [env LOCALGEN_ENGINE]",
        ),
        backend_option,
        click.option(
            "--base-url",
            envvar="LOCALGEN_BASE_URL",
            default=None,
            help="--engine openai: the server's API root, e.g. http://127.0.0.1:8000/v1. "
            "[env LOCALGEN_BASE_URL]",
        ),
        click.option(
            "--allow-host",
            "allow_hosts",
            multiple=True,
            envvar="LOCALGEN_ALLOW_HOSTS",
            help="A host other than this machine that --base-url may name (repeat; the "
            "variable takes a space-separated list). Anything else is refused. "
            "[env LOCALGEN_ALLOW_HOSTS]",
        ),
        api_key_file_option(
            "--engine openai: a file holding the key the server requires, sent as a bearer "
            "token (never give the key itself on the command line). [default: the variable "
            "LOCALGEN_API_KEY, if set]"
        ),
        click.option(
            "--ca-cert",
            type=click.Path(path_type=Path, dir_okay=False),
            default=None,
            help="--engine openai with https: verify the server with this certificate "
            "authority (PEM; an organisation's own, or the server's self-signed "
            "certificate). [default: the system's]",
        ),
        click.option(
            "--concurrency",
            type=click.IntRange(min=1, max=1024),
            default=EngineSettings.concurrency,
            show_default=True,
            help="--engine openai: requests in flight at once.",
        ),
        max_model_len_option,
        tensor_parallel_option,
        click.option(
            "--replicas",
            type=click.IntRange(min=1),
            default=EngineSettings.replicas,
            show_default=True,
            help="Run this many engines as Ray actors, each with the whole model (data "
            "parallel; each takes --tensor-parallel-size GPUs). Needs localgen[ray].",
        ),
        click.option(
            "--ray-address",
            envvar="LOCALGEN_RAY_ADDRESS",
            default=None,
            help="Join this Ray cluster (auto, HOST:PORT or ray://HOST:PORT; the host must be "
            "loopback or --allow-host) instead of starting a private one on this machine. "
            "[env LOCALGEN_RAY_ADDRESS]",
        ),
    ],
    "engine",
    _engine,
)


class SyntheticWeight(click.ParamType):
    """fit, auto, or a factor >= 0; and channel where the rows can carry fit scores."""

    def __init__(self, channel: bool = False) -> None:
        self.rules = ("fit", "channel", "auto") if channel else ("fit", "auto")
        self.name = "|".join(self.rules) + "|FACTOR"

    def convert(self, value: Any, param: Any, ctx: Any) -> str | float:
        try:
            weight = parse_weight(value)
            if isinstance(weight, str) and weight not in self.rules:
                raise ValueError(weight)
            return weight
        except ValueError:
            self.fail(f"{value!r}: give {', '.join(self.rules)} or a number >= 0", param, ctx)


def _weight_option(flag: str, default: str | float, help: str, channel: bool = False) -> Any:
    """A weight of one kind of row next to the real rows: fit, auto or a factor (and
    channel, for generated rows)."""
    kind = SyntheticWeight(channel)
    return click.option(flag, type=kind, default=default, show_default=True, help=help)


_HEAD = [
    click.option(
        "--encoder",
        default=None,
        help="Local sentence-encoder folder (Hugging Face format). "
        "[default: the built-in all-MiniLM-L6-v2]",
    ),
    click.option(
        "--c",
        "c",
        type=click.FloatRange(min=0, min_open=True),
        default=TrainSettings.c,
        show_default=True,
        help="Inverse regularisation strength of the linear head (scikit-learn's C).",
    ),
    click.option(
        "--no-class-weights",
        is_flag=True,
        help="Weigh every row the same (default: each label weighs the same in total).",
    ),
    _weight_option(
        "--synthetic-weight",
        TrainSettings.synthetic_weight,
        "What a synthetic row's loss counts next to a real row's, when training on "
        "both: channel: each row its own, its fit_posterior, the share of its text's "
        "probability the generating model gives its own label (generate's check, vllm "
        "engine); fit: each row its own, the probability a classifier on the real rows "
        "alone gives its label; a factor for all rows (0 ignores them); or auto: the "
        "factor of 0, 0.1, 0.25, 0.5, 1 that cross-validation on the real rows prefers: "
        "above 0 only where they show it helps, or, where a label has fewer than 5 real "
        "rows, the largest they do not show to harm.",
        channel=True,
    ),
    _weight_option(
        "--documents-weight",
        TrainSettings.documents_weight,
        "The same for the rows of --documents, chosen on the real rows and the "
        "documents alone; auto leaves them out only where the real rows say they harm.",
    ),
    _weight_option(
        "--descriptions-weight",
        TrainSettings.descriptions_weight,
        "The same for the task file's label descriptions, each one row of its label "
        "(train --task, run); 0 leaves them out.",
    ),
]
_TRAIN = [
    click.option(
        "--method",
        type=click.Choice(METHODS),
        default=TrainSettings.method,
        show_default=True,
        help="frozen: fit the linear head on the encoder's vectors (seconds); fine-tune: "
        "train encoder and head together on the rows; setfit: tune the encoder on pairs of "
        "rows (same label or not) first, then fit the head (minutes on a CPU, the best at a "
        "few rows per label).",
    ),
    click.option(
        "--fine-tune",
        is_flag=True,
        help="The same as --method fine-tune.",
    ),
    click.option(
        "--pairs",
        type=click.IntRange(min=1),
        default=TrainSettings.pairs,
        show_default=True,
        help="setfit: pairs the encoder learns from (the time it takes, whatever the rows).",
    ),
    click.option(
        "--epochs",
        type=click.IntRange(min=1),
        default=TrainSettings.epochs,
        show_default=True,
        help="fine-tune: passes over the rows.",
    ),
    click.option(
        "--learning-rate",
        type=click.FloatRange(min=0, min_open=True),
        default=TrainSettings.learning_rate,
        show_default=True,
        help="Of the encoder, when it is trained (fine-tune: the head's is 100 times larger).",
    ),
    click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        default=TrainSettings.batch_size,
        show_default=True,
        help="Rows (fine-tune) or pairs (setfit) per step.",
    ),
]


def _train(
    encoder: str | None,
    c: float,
    no_class_weights: bool,
    synthetic_weight: str | float,
    documents_weight: str | float,
    descriptions_weight: str | float,
    method: str,
    fine_tune: bool,
    pairs: int,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
) -> TrainSettings:
    if fine_tune and method not in ("frozen", "fine-tune"):
        raise click.UsageError(f"--fine-tune means --method fine-tune, not --method {method}")
    return TrainSettings(
        encoder=encoder,
        c=c,
        balanced=not no_class_weights,
        synthetic_weight=synthetic_weight,
        documents_weight=documents_weight,
        descriptions_weight=descriptions_weight,
        method="fine-tune" if fine_tune else method,
        pairs=pairs,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        seed=seed,
    )


train_options = _group([*_HEAD, *_TRAIN], "settings", _train)
