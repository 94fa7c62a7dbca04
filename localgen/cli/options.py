"""What every command shares: each option declared once, option groups that hand the
command the settings object they describe, and the one error boundary.

A group decorator (`engine_options`, `train_options`, `planned`) declares its options
and replaces them, in the command's arguments, by the typed settings they make:
`engine: EngineSettings`, `settings: TrainSettings`, `planned: GenerateConfig`. Defaults
come from `localgen.config`. Options that name a seed read it from the command's own
`--seed`. This module imports nothing heavy.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from localgen.config import (
    RESAMPLES,
    SEED,
    EngineSettings,
    GenerateConfig,
    TrainSettings,
)
from localgen.curation.rules import ROW_SOURCES
from localgen.errors import EgressBlocked, LocalgenError
from localgen.planning.task import STRATEGIES
from localgen.progress import Say, silent

F = TypeVar("F", bound=Callable[..., Any])
INTERRUPTED = "interrupted; rows already written are kept: rerun the same command to resume"


def echo_err(message: str) -> None:
    """Messages and progress go to stderr; stdout is for data."""
    click.echo(message, err=True)


def say(quiet: bool) -> Say:
    return silent if quiet else echo_err


def handle_errors(func: F) -> F:
    """Turn library errors into click errors: one line, no traceback. Put it right under
    the command decorator, so it also covers the settings the option groups build."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LocalgenError as e:
            exc = click.ClickException(str(e))
            exc.exit_code = e.exit_code  # type: ignore[misc]
            raise exc from None
        except EgressBlocked as e:  # a dependency tried to go online and did not give up
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            # Before click turns it into "Aborted!" and exit code 1.
            echo_err(INTERRUPTED)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def apply(*options: Callable[[F], F]) -> Callable[[F], F]:
    """One decorator applying `options` in the order listed (and shown by --help)."""

    def decorator(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return decorator


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


# --- single options, declared once -------------------------------------------------------


def columns(files: str) -> Callable[[F], F]:
    """--text-column and --label-column: which columns of `files` hold the text and label."""
    return apply(
        *(
            click.option(
                f"--{kind}-column",
                default=kind,
                show_default=True,
                help=f"Column of {files} holding the {kind}.",
            )
            for kind in ("text", "label")
        )
    )


def text_column(files: str) -> Callable[[F], F]:
    return click.option(
        "--text-column",
        default="text",
        show_default=True,
        help=f"Column of {files} holding the text.",
    )


def out_option(what: str) -> Callable[[F], F]:
    return click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help=what)


def json_option(what: str) -> Callable[[F], F]:
    return click.option("--json", "as_json", is_flag=True, help=f"Print {what}.")


def overwrite_option(
    what: str = "Replace what is in --out instead of resuming.",
) -> Callable[[F], F]:
    return click.option("--overwrite", is_flag=True, help=what)


def seed_option(what: str) -> Callable[[F], F]:
    return click.option("--seed", type=int, default=SEED, show_default=True, help=what)


def rows_option(what: str) -> Callable[[F], F]:
    return click.option(
        "--rows", type=click.Choice(ROW_SOURCES), default="auto", show_default=True, help=what
    )


def data_file(name: str, what: str, required: bool = False) -> Callable[[F], F]:
    return click.option(
        name, type=click.Path(path_type=Path), required=required, default=None, help=what
    )


quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
task_argument = click.argument("task_file", type=click.Path(path_type=Path))
model_option = click.option(
    "--model",
    "-m",
    envvar="LOCALGEN_MODEL",
    default=None,
    help="Local model folder (Hugging Face format), or a name under ./models/ or the "
    "localgen home. With --engine openai: the served model's name. "
    "[default: the built-in SmolLM2-135M-Instruct; env LOCALGEN_MODEL]",
)
backend_option = click.option(
    "--backend",
    default=None,
    help="Constrained-decoding backend. vllm: xgrammar (default; for `serve`: guidance), "
    "guidance, outlines. transformers: outlines_core (default), xgrammar, llguidance. "
    "openai: json_schema (default, response_format), grammar (vLLM servers).",
)
max_model_len_option = click.option(
    "--max-model-len",
    type=click.IntRange(min=256),
    default=EngineSettings.max_model_len,
    show_default=True,
    help="Longest prompt + row the engine accepts, in tokens.",
)
tensor_parallel_option = click.option(
    "--tensor-parallel-size",
    type=click.IntRange(min=1),
    default=EngineSettings.tensor_parallel_size,
    show_default=True,
    help="vLLM on a multi-GPU node: split the model over this many GPUs.",
)
retries_option = click.option(
    "--retries",
    type=click.IntRange(min=0, max=10),
    default=GenerateConfig.max_retries,
    show_default=True,
    help="Extra attempts, with a new seed, for an output that fails validation.",
)
resamples_option = click.option(
    "--resamples",
    type=click.IntRange(min=0),
    default=RESAMPLES,
    show_default=True,
    help="Bootstrap resamples for the confidence intervals (0: none).",
)


class BalanceTarget(click.ParamType):
    """--balance: 'majority' or a positive number of rows."""

    name = "target"

    def convert(self, value: Any, param: Any, ctx: Any) -> str | int:
        if value == "majority" or isinstance(value, int):
            return value
        try:
            target = int(value)
        except ValueError:
            self.fail("give 'majority' or a number of rows", param, ctx)
        if target <= 0:
            self.fail("the target must be positive", param, ctx)
        return target


rows_options = apply(
    click.option(
        "-n",
        "--count",
        type=click.IntRange(min=1),
        default=None,
        help="Rows per label. [default: the task file's generation.count]",
    ),
    click.option(
        "--strategy",
        "strategies",
        type=click.Choice(STRATEGIES),
        multiple=True,
        help="How to prompt; repeat to mix in equal shares (weights: in the task file). "
        "[default: the task file's generation.strategy]",
    ),
    click.option(
        "--balance",
        type=BalanceTarget(),
        is_flag=False,
        flag_value="majority",
        default=None,
        metavar="[TARGET]",
        help="Instead of a flat count, fill each label of the real data up to TARGET rows, "
        "real plus synthetic (alone: up to the largest label).",
    ),
)
instructions_option = click.option(
    "--instructions", default="", help="Extra instructions added to every prompt of this run."
)
run_seed_option = seed_option("Seed of the plan and of every request: same seed, same rows.")


# --- option groups that build a settings object ------------------------------------------


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
    instructions: str,
    seed: int,
) -> GenerateConfig:
    # `plan` writes nothing: the run folder is filled in by the command that has one.
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
        instructions=instructions,
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
        instructions_option,
        run_seed_option,
    ],
    "planned",
    _planned,
    owns_seed=True,
)


def _engine(
    engine_name: str,
    backend: str | None,
    max_model_len: int,
    base_url: str | None,
    allow_hosts: tuple[str, ...],
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
]
_FINE_TUNE = [
    click.option(
        "--fine-tune",
        is_flag=True,
        help="Train the encoder with the head (for a GPU, or a few hundred rows on a CPU); "
        "by default the encoder is frozen and only the linear head is fitted.",
    ),
    click.option(
        "--epochs",
        type=click.IntRange(min=1),
        default=TrainSettings.epochs,
        show_default=True,
        help="Passes over the data when fine-tuning.",
    ),
    click.option(
        "--learning-rate",
        type=click.FloatRange(min=0, min_open=True),
        default=TrainSettings.learning_rate,
        show_default=True,
        help="Encoder learning rate when fine-tuning (the head's is 100 times larger).",
    ),
    click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        default=TrainSettings.batch_size,
        show_default=True,
        help="Rows per step when fine-tuning.",
    ),
]


def _head(encoder: str | None, c: float, no_class_weights: bool, seed: int) -> TrainSettings:
    return TrainSettings(encoder=encoder, c=c, balanced=not no_class_weights, seed=seed)


def _train(
    encoder: str | None,
    c: float,
    no_class_weights: bool,
    fine_tune: bool,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
) -> TrainSettings:
    return TrainSettings(
        encoder=encoder,
        c=c,
        balanced=not no_class_weights,
        fine_tune=fine_tune,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        seed=seed,
    )


head_options = _group(_HEAD, "settings", _head)  # a frozen encoder and its linear head
train_options = _group([*_HEAD, *_FINE_TUNE], "settings", _train)
