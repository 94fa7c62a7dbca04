"""What every command shares: each option declared once, and the one error boundary.

Defaults come from `localgen.config`; the option groups that build a settings object are
in `localgen.cli.groups`. This module imports nothing heavy.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from localgen.config import RESAMPLES, SEED, EngineSettings, GenerateConfig
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


def api_key_file_option(what: str) -> Callable[[F], F]:
    return click.option(
        "--api-key-file", type=click.Path(path_type=Path, dir_okay=False), default=None, help=what
    )


# What the engines print while they load, silenced by --quiet besides localgen's own
# progress: tqdm's bars (engines/vllm_setup.py passes the switch on to vLLM, which
# overrides it), torch's C++ warnings and vLLM's log lines; read when they start.
QUIET_ENV = {"TQDM_DISABLE": "1", "TORCH_CPP_LOG_LEVEL": "ERROR", "VLLM_LOGGING_LEVEL": "ERROR"}
QUIET_LOGGERS = ("vllm", "torch", "transformers", "sentence_transformers")


def _quiet_engines(ctx: click.Context, param: click.Parameter, quiet: bool) -> bool:
    if quiet:
        os.environ.update(QUIET_ENV)
        for name in QUIET_LOGGERS:  # an engine imported already read the environment
            logging.getLogger(name).setLevel(logging.ERROR)
    return quiet


quiet_option = click.option(
    "-q",
    "--quiet",
    is_flag=True,
    callback=_quiet_engines,
    help="No progress lines, and no loading bars or warnings from the engines.",
)
strict_option = click.option(
    "--strict",
    is_flag=True,
    help="Make the data warnings errors: a text with two labels (after the normalisation "
    "curation uses), or a training text in the test data.",
)
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
    help="Constrained-decoding backend. vllm: guidance (default), xgrammar (no quotes, "
    "backslashes, line breaks or tabs in rows), outlines. transformers: llguidance "
    "(default), outlines_core, xgrammar. openai: json_schema (default, response_format), "
    "grammar (the row regex; vLLM servers).",
)
max_model_len_option = click.option(
    "--max-model-len",
    type=click.IntRange(min=256),
    default=EngineSettings.max_model_len,
    help="Longest prompt + row the engine accepts, in tokens. "
    "[default: the model's own context, at most 8192]",
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
check_labels_option = click.option(
    "--check-labels/--no-check-labels",
    default=GenerateConfig.check_labels,
    show_default=True,
    help="After generating, ask the model which label each row belongs to, with a grammar "
    "that admits only the task's labels (the check_label column; curation's "
    "label-consistency rule reads it).",
)
fit_margin_option = click.option(
    "--fit-margin/--no-fit-margin",
    default=GenerateConfig.fit_margin,
    show_default=True,
    help="With the label check, score each row under every label's prompt (a prompt-only "
    "pass per label, vllm engine): the fit_margin and fit_posterior columns that "
    "--synthetic-weight channel uses. About doubles a run on the example task.",
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
language_option = click.option(
    "--language",
    default=None,
    help="Language of the rows: a code (de, fra) or a name; replaces the task file's `language`.",
)
instructions_option = click.option(
    "--instructions", default="", help="Extra instructions added to every prompt of this run."
)
run_seed_option = seed_option("Seed of the plan and of every request: same seed, same rows.")
