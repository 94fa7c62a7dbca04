"""The command line: a thin click layer over the library. Data goes to stdout, progress
and messages to stderr; a LocalgenError becomes one line and exit code 1 (2 for usage)."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from localgen import __version__
from localgen.curation.rules import ROW_SOURCES, RULES
from localgen.errors import EgressBlocked, LocalgenError
from localgen.offline import apply_offline_env
from localgen.planning.task import STRATEGIES

F = TypeVar("F", bound=Callable[..., Any])
INTERRUPTED = "interrupted; rows already written are kept: rerun the same command to resume"


def _echo_err(message: str) -> None:
    click.echo(message, err=True)


def _handle_errors(func: F) -> F:
    """Turn library errors into click errors: one line, no traceback."""

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
            _echo_err(INTERRUPTED)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="localgen")
@click.option("-v", "--verbose", is_flag=True, help="Show the engines' own log messages.")
def cli(verbose: bool) -> None:
    """Generate labeled, schema-constrained synthetic training text with a local LLM,
    curate it, and train a local classifier on it.

    Nothing leaves the machine: models and data come from local files, and network
    connections other than loopback are refused while localgen runs (except to an
    inference server or Ray cluster you name with --allow-host).

    \b
    Example:
      localgen plan examples/support-tickets/task.toml
      localgen generate examples/support-tickets/task.toml --out runs/tickets -n 50
      localgen show runs/tickets
      localgen run examples/support-tickets/task.toml --out runs/job \\
          --real examples/support-tickets/seed.csv --test examples/support-tickets/test.csv \\
          --text-column message --label-column team
    """
    level = "INFO" if verbose else "ERROR"
    os.environ.setdefault("VLLM_LOGGING_LEVEL", level)
    logging.basicConfig(level=getattr(logging, level), format="%(name)s: %(message)s")
    if not verbose:
        # The engines' deprecation and performance hints are for their developers, not ours.
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _balance(value: str | None) -> str | int | None:
    if value is None or value == "majority":
        return value
    try:
        target = int(value)
    except ValueError:
        raise click.BadParameter("give 'majority' or a number of rows") from None
    if target <= 0:
        raise click.BadParameter("the target must be positive")
    return target


def _column_options(files: str) -> list[Callable[[F], F]]:
    """--text-column and --label-column: which columns of `files` hold the text and label."""
    return [
        click.option(
            f"--{kind}-column",
            default=kind,
            show_default=True,
            help=f"Column of {files} holding the {kind}.",
        )
        for kind in ("text", "label")
    ]


_ROWS_OPTIONS = [
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
        is_flag=False,
        flag_value="majority",
        default=None,
        metavar="[TARGET]",
        help="Instead of a flat count, fill each label of the real data up to TARGET rows, "
        "real plus synthetic (alone: up to the largest label).",
    ),
]
_RUN_SETTINGS = [
    click.option(
        "--instructions",
        default="",
        help="Extra instructions added to every prompt of this run.",
    ),
    click.option(
        "--seed",
        type=int,
        default=0,
        show_default=True,
        help="Seed of the plan and of every request: same seed, same rows.",
    ),
]
_PLAN_OPTIONS = [
    click.argument("task_file", type=click.Path(path_type=Path)),
    *_ROWS_OPTIONS,
    click.option(
        "--seed-data",
        type=click.Path(path_type=Path),
        default=None,
        help="Real labeled examples (CSV, JSONL or Parquet): shown by few-shot and "
        "contrastive, counted by --balance.",
    ),
    *_column_options("--seed-data"),
    click.option(
        "--reject",
        type=click.Path(path_type=Path),
        default=None,
        help="Rows you rejected (a .txt of texts or row ids, or a table with a text or id "
        "column): the contrastive strategy asks for something different.",
    ),
    click.option(
        "--anchors",
        type=click.Path(path_type=Path),
        default=None,
        help="Real examples to write close variants of, with their label (same columns as "
        "--seed-data): every request is contrastive, -n rows per anchor.",
    ),
    *_RUN_SETTINGS,
]


def _options(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    """One decorator applying `options` in the order listed (and shown by --help)."""

    def apply(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return apply


_plan_options = _options(_PLAN_OPTIONS)


def _config(
    task_file: Path,
    count: int | None,
    strategies: tuple[str, ...],
    balance: str | None,
    **rest: Any,
) -> Any:
    """GenerateConfig from the command-line options."""
    from localgen.config import GenerateConfig

    if balance is not None and count is not None:
        raise click.UsageError("give either --count or --balance, not both")
    return GenerateConfig(
        task_path=task_file,
        count=count,
        strategy=strategies,
        balance=_balance(balance),
        **rest,
    )


def _print_plan(config: Any, n_prompts: int, as_json: bool) -> None:
    from localgen.generation.generate import prepare_plan
    from localgen.generation.show import plan_summary

    _, _, plan = prepare_plan(config)
    click.echo(plan_summary(plan, n_prompts, as_json))


@cli.command("plan")
@_plan_options
@click.option(
    "--prompts",
    "n_prompts",
    type=click.IntRange(min=0),
    default=None,
    help="Prompts to print. [default: one per strategy]",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as one JSON object.")
@_handle_errors
def plan_command(n_prompts: int | None, as_json: bool, **options: Any) -> None:
    """Print what a run would ask for: rows per label and strategy, and example prompts.

    Loads no LLM and writes nothing (the contrastive strategy loads the small sentence
    encoder to find neighbours).

    \b
    Example:
      localgen plan examples/legal-clauses/task.toml --seed-data examples/legal-clauses/seed.csv
      localgen plan task.toml --strategy attributes --strategy hierarchical --prompts 4
    """
    _print_plan(
        _config(out=Path("."), **options), n_prompts if n_prompts is not None else -1, as_json
    )


_ENGINE_OPTIONS = [
    click.option(
        "--model",
        "-m",
        envvar="LOCALGEN_MODEL",
        default=None,
        help="Local model folder (Hugging Face format) or a name under ./models/. "
        "[default: the built-in SmolLM2-135M-Instruct; env LOCALGEN_MODEL]",
    ),
    click.option(
        "--engine",
        type=click.Choice(["vllm", "transformers", "openai", "fake"]),
        envvar="LOCALGEN_ENGINE",
        default="vllm",
        show_default=True,
        help="vllm: fast, batched, in this process. transformers: Outlines on plain "
        "transformers. openai: an OpenAI-compatible server (--base-url), e.g. `localgen "
        "serve`; --model is then the served model's name. fake: no model, canned rows "
        "(tests and overhead benchmarks). [env LOCALGEN_ENGINE]",
    ),
    click.option(
        "--backend",
        default=None,
        help="Constrained-decoding backend. vllm: xgrammar (default), guidance, "
        "outlines. transformers: outlines_core (default), xgrammar, llguidance. "
        "openai: json_schema (default, response_format), grammar (vLLM servers).",
    ),
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
        default=32,
        show_default=True,
        help="--engine openai: requests in flight at once.",
    ),
    click.option(
        "--max-model-len",
        type=click.IntRange(min=256),
        default=2048,
        show_default=True,
        help="Longest prompt + row the engine accepts, in tokens.",
    ),
    click.option(
        "--tensor-parallel-size",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="--engine vllm on a multi-GPU node: split the model over this many GPUs.",
    ),
    click.option(
        "--replicas",
        type=click.IntRange(min=1),
        default=1,
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
    click.option(
        "--retries",
        type=click.IntRange(min=0, max=10),
        default=2,
        show_default=True,
        help="Extra attempts, with a new seed, for an output that fails validation.",
    ),
]


ENGINE_KEYS = (
    "engine",
    "backend",
    "max_model_len",
    "base_url",
    "allow_hosts",
    "concurrency",
    "tensor_parallel_size",
    "replicas",
    "ray_address",
)


def _engine(seed: int, options: dict[str, Any]) -> Any:
    """EngineSettings from the engine options, which are taken out of `options`."""
    from localgen.config import EngineSettings
    from localgen.engines.loader import check_settings

    given = {key: options.pop(key) for key in ENGINE_KEYS}
    given["allow_hosts"] = tuple(dict.fromkeys(given["allow_hosts"]))
    settings = EngineSettings(name=given.pop("engine"), seed=seed, **given)
    check_settings(settings)  # a bad engine, backend or server URL fails before any work
    return settings


@cli.command()
@_plan_options
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    required=True,
    help="Run folder to write (synthetic.parquet, manifest.json, shards/).",
)
@_options(_ENGINE_OPTIONS)
@click.option(
    "--format",
    "formats",
    type=click.Choice(["parquet", "jsonl"]),
    multiple=True,
    default=("parquet",),
    show_default=True,
    help="Output table format; repeat for both.",
)
@click.option(
    "--shard-rows",
    type=click.IntRange(min=1, max=100_000),
    default=200,
    show_default=True,
    help="Rows per shard on disk: a killed run loses at most this many finished rows "
    "(or 30 s of work).",
)
@click.option("--overwrite", is_flag=True, help="Replace what is in --out instead of resuming.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the plan (counts and example prompts); load no model, write nothing.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print a JSON summary (counts, output files, timings) instead of the file names.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress line.")
@_handle_errors
def generate(
    model: str | None,
    retries: int,
    formats: tuple[str, ...],
    shard_rows: int,
    overwrite: bool,
    dry_run: bool,
    as_json: bool,
    quiet: bool,
    **options: Any,
) -> None:
    """Generate labeled rows for TASK_FILE into a run folder.

    Every row is JSON constrained to {"text", "label"} with the requested label, and
    carries its provenance. Rerunning the same command after an interruption resumes.

    \b
    Example:
      localgen generate examples/support-tickets/task.toml --out runs/tickets -n 50
      localgen generate task.toml --out runs/mix --seed-data real.csv \\
          --strategy few-shot --strategy contrastive --strategy attributes
    """
    from localgen.generation.generate import generate as run_generate

    engine = _engine(options["seed"], options)  # takes the engine options out of options
    config = _config(
        model=model,
        engine=engine,
        max_retries=retries,
        formats=tuple(dict.fromkeys(formats)),
        shard_rows=shard_rows,
        overwrite=overwrite,
        quiet=quiet,
        **options,
    )
    if dry_run:
        _print_plan(config, -1, as_json=as_json)
        return
    log = (lambda _msg: None) if quiet else _echo_err
    result = run_generate(config, say=log)
    _echo_err(
        f"{result.written}/{result.planned} rows in {result.out}"
        + (f" ({result.resumed} resumed)" if result.resumed else "")
        + (f"; {len(result.failures)} failed, see manifest.json" if result.failures else "")
    )
    if as_json:
        summary = {
            "out": str(result.out),
            "planned": result.planned,
            "written": result.written,
            "resumed": result.resumed,
            "failed": len(result.failures),
            "outputs": [str(p) for p in result.outputs],
            "manifest": str(result.out / "manifest.json"),
            "timings": result.manifest.get("timings"),
        }
        click.echo(json.dumps(summary, indent=2))
    else:
        for path in result.outputs:
            click.echo(str(path))
    if result.failures:
        sys.exit(1)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--limit",
    "-l",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Rows to print.",
)
@click.option("--json", "as_json", is_flag=True, help="Print rows as JSON lines, all columns.")
@_handle_errors
def show(run_dir: Path, limit: int, as_json: bool) -> None:
    """Print a count per label and a sample of rows spread over the run.

    \b
    Example:
      localgen show runs/tickets --limit 5
    """
    from localgen.generation.show import head

    click.echo(head(run_dir, limit, as_json))


def _data_columns(func: F) -> F:
    for option in reversed(_column_options("--real and --eval")):
        func = option(func)
    return func


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--real",
    type=click.Path(path_type=Path),
    default=None,
    help="Real labeled examples: for leakage, duplicates of real text and the label judge. "
    "[default: the run's --seed-data]",
)
@click.option(
    "--eval",
    "eval_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Evaluation data: rows too close to it are dropped (test-set contamination).",
)
@_data_columns
@click.option(
    "--skip",
    type=click.Choice(RULES),
    multiple=True,
    help="Switch a rule off; repeat for more.",
)
@click.option(
    "--min-words",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Drop rows with fewer words.",
)
@click.option(
    "--max-words",
    type=click.IntRange(min=1),
    default=None,
    help="Drop rows with more words. [default: no limit]",
)
@click.option(
    "--leak-words",
    type=click.IntRange(min=2),
    default=8,
    show_default=True,
    help="Leakage: drop rows sharing this many consecutive words with a real example.",
)
@click.option(
    "--near-duplicate",
    type=click.FloatRange(0, 1),
    default=0.95,
    show_default=True,
    help="Drop rows with at least this cosine to an earlier row or a real example.",
)
@click.option(
    "--contamination",
    type=click.FloatRange(0, 1),
    default=0.90,
    show_default=True,
    help="Drop rows with at least this cosine to an --eval row.",
)
@click.option(
    "--mislabeled",
    type=click.Choice(["flag", "drop"]),
    default="flag",
    show_default=True,
    help="What to do with rows whose label the judge disputes: keep them flagged, or drop.",
)
@click.option("--json", "as_json", is_flag=True, help="Print curation.json instead of a table.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@_handle_errors
def curate(
    run_dir: Path,
    real: Path | None,
    eval_file: Path | None,
    skip: tuple[str, ...],
    as_json: bool,
    quiet: bool,
    **settings: Any,
) -> None:
    """Drop duplicates, copies of real text, test-set look-alikes and bad lengths; judge labels.

    Writes RUN_DIR/curated.parquet (the kept rows, with the judge's label) and
    RUN_DIR/curation.json (each rule's setting and counts, and every finding per row).
    The raw rows are not touched. Every rule runs on every row; a dropped row is charged
    to the first rule, in the order of the table printed.

    \b
    Example:
      localgen curate runs/tickets --real data/train.csv --eval data/test.csv
      localgen curate runs/tickets --skip label-fidelity --near-duplicate 0.9
    """
    from localgen.config import CurateConfig
    from localgen.curation.curate import curate as run_curation
    from localgen.curation.curate import summary_table

    config = CurateConfig(
        run_dir=run_dir, real=real, eval=eval_file, skip=frozenset(skip), **settings
    )
    summary = run_curation(config, say=(lambda _: None) if quiet else _echo_err)
    click.echo(json.dumps(summary, indent=2) if as_json else summary_table(summary))


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--real",
    type=click.Path(path_type=Path),
    default=None,
    help="Real labeled examples to compare with. [default: the run's --seed-data]",
)
@_data_columns
@click.option(
    "--rows",
    "source",
    type=click.Choice(ROW_SOURCES),
    default="auto",
    show_default=True,
    help="Which rows to measure; auto: curated.parquet when curate has run, else all rows.",
)
@click.option("--json", "as_json", is_flag=True, help="Print metrics.json instead of a summary.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@_handle_errors
def report(
    run_dir: Path,
    real: Path | None,
    text_column: str,
    label_column: str,
    source: str,
    as_json: bool,
    quiet: bool,
) -> None:
    """Measure a run's data and write RUN_DIR/metrics.json and RUN_DIR/report.html.

    Per label and overall, for the synthetic rows and the real data side by side: counts,
    lengths, distinct-1/2, self-BLEU, Remote Clique and Chamfer distance on sentence
    embeddings, the similarity of the synthetic rows to the real ones, and the curation
    rates. The HTML file has its charts built in and opens from disk with no network.

    \b
    Example:
      localgen curate runs/tickets --real data/train.csv
      localgen report runs/tickets --real data/train.csv
    """
    from localgen.report.report import REPORT, summary_lines, write_report

    metrics = write_report(
        run_dir,
        real,
        source=source,
        text_column=text_column,
        label_column=label_column,
        say=(lambda _: None) if quiet else _echo_err,
    )
    click.echo(json.dumps(metrics, indent=2) if as_json else summary_lines(metrics))
    if not as_json:
        click.echo(f"report: {run_dir / REPORT}")


_HEAD_OPTIONS = [
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
        default=1.0,
        show_default=True,
        help="Inverse regularisation strength of the linear head (scikit-learn's C).",
    ),
    click.option(
        "--no-class-weights",
        is_flag=True,
        help="Weigh every row the same (default: each label weighs the same in total).",
    ),
]
_TRAIN_OPTIONS = [
    *_HEAD_OPTIONS,
    click.option(
        "--fine-tune",
        is_flag=True,
        help="Train the encoder with the head (for a GPU, or a few hundred rows on a CPU); "
        "by default the encoder is frozen and only the linear head is fitted.",
    ),
    click.option(
        "--epochs",
        type=click.IntRange(min=1),
        default=3,
        show_default=True,
        help="Passes over the data when fine-tuning.",
    ),
    click.option(
        "--learning-rate",
        type=click.FloatRange(min=0, min_open=True),
        default=2e-5,
        show_default=True,
        help="Encoder learning rate when fine-tuning (the head's is 100 times larger).",
    ),
    click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        default=16,
        show_default=True,
        help="Rows per step when fine-tuning.",
    ),
]


def _train_settings(seed: int = 0, no_class_weights: bool = False, **options: Any) -> Any:
    from localgen.config import TrainSettings

    return TrainSettings(balanced=not no_class_weights, seed=seed, **options)


@cli.command()
@click.option(
    "--real",
    type=click.Path(path_type=Path),
    default=None,
    help="Real labeled training data (CSV, JSONL or Parquet).",
)
@click.option(
    "--synthetic",
    type=click.Path(path_type=Path),
    default=None,
    help="A run folder: its curated rows when curate has run (see --rows), else all rows.",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    required=True,
    help="Model folder to write (replaced whole if it holds a model).",
)
@_column_options("--real")[0]
@_column_options("--real")[1]
@click.option(
    "--rows",
    type=click.Choice(ROW_SOURCES),
    default="auto",
    show_default=True,
    help="Rows of --synthetic; auto: curated.parquet when curate has run, else all rows.",
)
@_options(_TRAIN_OPTIONS)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of fine-tuning.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the model's model.json, not its folder."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@_handle_errors
def train(
    real: Path | None,
    synthetic: Path | None,
    out: Path,
    text_column: str,
    label_column: str,
    rows: str,
    as_json: bool,
    quiet: bool,
    **options: Any,
) -> None:
    """Train a text classifier on real rows, synthetic rows, or both.

    The default is the built-in sentence encoder, frozen, with a logistic-regression head
    and balanced class weights: seconds on a CPU. The model folder holds the head
    weights, labels.json, the resolved settings and a format version.

    \b
    Example:
      localgen train --real data/train.csv --synthetic runs/tickets --out models/tickets
      localgen train --real data/train.csv --out models/real-only --fine-tune --epochs 4
    """
    from localgen.classify.train import train as run_training

    model = run_training(
        out,
        real=real,
        synthetic=synthetic,
        rows=rows,
        text_column=text_column,
        label_column=label_column,
        settings=_train_settings(**options),
        say=(lambda _: None) if quiet else _echo_err,
    )
    counts = model.info["training"]["rows"]
    parts = [f"{sum(c.values())} {source}" for source, c in counts.items()]
    _echo_err(f"trained on {' + '.join(parts)} rows, {len(model.labels)} labels")
    if as_json:
        click.echo(json.dumps({"model": str(out)} | model.info, indent=2))
    else:
        click.echo(str(out))


@cli.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.argument("test_file", type=click.Path(path_type=Path))
@_column_options("TEST_FILE")[0]
@_column_options("TEST_FILE")[1]
@click.option(
    "--resamples",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Bootstrap resamples for the confidence intervals (0: none).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the scores as one JSON object.")
@_handle_errors
def evaluate(
    model_dir: Path,
    test_file: Path,
    text_column: str,
    label_column: str,
    resamples: int,
    as_json: bool,
) -> None:
    """Score a model on labeled real data: accuracy, macro-F1, per-label precision,
    recall and F1, and the confusion matrix, with 95% bootstrap intervals.

    \b
    Example:
      localgen evaluate models/tickets data/test.csv
      localgen evaluate models/tickets data/test.csv --json | jq .macro_f1
    """
    from localgen.classify.evaluation import render
    from localgen.classify.train import evaluate as run_evaluation

    result = run_evaluation(model_dir, test_file, text_column, label_column, resamples)
    click.echo(json.dumps(result, indent=2) if as_json else render(result))


@cli.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.argument("file", type=click.Path(path_type=Path))
@_column_options("FILE")[0]
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "jsonl", "csv"]),
    default="table",
    show_default=True,
    help="table: for reading; jsonl/csv: one row per text with every probability.",
)
@_handle_errors
def predict(model_dir: Path, file: Path, text_column: str, fmt: str) -> None:
    """Label the texts of FILE (CSV, JSONL, Parquet, or .txt with one text per line).

    \b
    Example:
      localgen predict models/tickets inbox.csv
      localgen predict models/tickets inbox.txt --format jsonl > labelled.jsonl
    """
    from localgen.classify.train import predict as run_prediction

    frame = run_prediction(model_dir, file, text_column)
    if fmt == "jsonl":
        for row in frame.iter_rows(named=True):
            click.echo(json.dumps(row, ensure_ascii=False))
    elif fmt == "csv":
        click.echo(frame.write_csv(), nl=False)
    else:
        width = 66  # of the text: the line stays within 100 columns
        click.echo(f"{'label':<20} {'prob':>5}  text")
        for text, label, p in frame.select("text", "label", "probability").iter_rows():
            short = text if len(text) <= width else text[: width - 1] + "…"
            click.echo(f"{label[:20]:<20} {p:>5.2f}  {short}")


@cli.command("run")
@click.argument("task_file", type=click.Path(path_type=Path))
@click.option(
    "--real",
    type=click.Path(path_type=Path),
    required=True,
    help="Real labeled training data: shown to the LLM as examples, and trained on.",
)
@click.option(
    "--test",
    type=click.Path(path_type=Path),
    required=True,
    help="Real labeled test data: every classifier is scored on it; curation drops "
    "synthetic rows too close to it.",
)
@_options(_column_options("--real and --test"))
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder for the run, the models, comparison.json and report.html.",
)
@_options(_ROWS_OPTIONS)
@_options(_RUN_SETTINGS)
@_options(_ENGINE_OPTIONS)
@_options(_TRAIN_OPTIONS)
@click.option(
    "--resamples",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Bootstrap resamples for the confidence intervals (0: none).",
)
@click.option("--overwrite", is_flag=True, help="Replace what is in --out instead of resuming.")
@click.option("--json", "as_json", is_flag=True, help="Print comparison.json instead of a table.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@_handle_errors
def run_command(
    task_file: Path,
    real: Path,
    test: Path,
    text_column: str,
    label_column: str,
    out: Path,
    count: int | None,
    strategies: tuple[str, ...],
    balance: str | None,
    instructions: str,
    seed: int,
    model: str | None,
    retries: int,
    resamples: int,
    overwrite: bool,
    as_json: bool,
    quiet: bool,
    **train_options: Any,
) -> None:
    """The whole job: generate, curate, then train on real only, synthetic only and
    real + synthetic, and score all three on the same real test data.

    Prints the comparison (macro-F1 and accuracy with 95% bootstrap intervals, and the
    paired difference against real only) and writes it to OUT/comparison.json and
    OUT/report.html. Rerunning after an interruption resumes the generation.

    \b
    Example:
      localgen run examples/support-tickets/task.toml \\
          --real examples/support-tickets/seed.csv --test examples/support-tickets/test.csv \\
          --text-column message --label-column team --out runs/tickets -n 20 \\
          --strategy few-shot --strategy contrastive
    """
    from localgen.config import RunConfig
    from localgen.jobs.run import comparison_table
    from localgen.jobs.run import run as run_pipeline

    engine = _engine(seed, train_options)  # takes the engine options out of train_options
    config = RunConfig(
        generation=_config(
            task_file=task_file,
            count=count,
            strategies=strategies,
            balance=balance,
            out=out,
            seed_data=real,
            text_column=text_column,
            label_column=label_column,
            instructions=instructions,
            seed=seed,
            model=model,
            engine=engine,
            max_retries=retries,
            overwrite=overwrite,
            quiet=quiet,
        ),
        test=test,
        settings=_train_settings(seed=seed, **train_options),
        resamples=resamples,
    )
    comparison = run_pipeline(config, say=(lambda _: None) if quiet else _echo_err)
    click.echo(json.dumps(comparison, indent=2) if as_json else comparison_table(comparison))
    if not as_json:
        click.echo(f"report: {out / 'report.html'}")


@cli.command()
@click.argument("task_file", type=click.Path(path_type=Path))
@click.option(
    "--real",
    type=click.Path(path_type=Path),
    required=True,
    help="Real labeled training data.",
)
@click.option(
    "--validation",
    type=click.Path(path_type=Path),
    required=True,
    help="Real labeled validation data: its mistakes are the anchors, its macro-F1 "
    "decides whether a round is kept.",
)
@click.option(
    "--test",
    type=click.Path(path_type=Path),
    default=None,
    help="Real labeled test data no round sees: the unbiased score, per round.",
)
@_options(_column_options("--real, --validation and --test"))
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder for the rounds, the final model and boost.json.",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=0, max=50),
    default=3,
    show_default=True,
    help="Rounds of generate, retrain, keep-if-better.",
)
@click.option(
    "--targets",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Validation examples to write variants of, per round: misclassified first, then "
    "the least confident.",
)
@click.option(
    "--variants",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Rows to generate per target.",
)
@click.option(
    "--min-gain",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Keep a round only if validation macro-F1 rises by more than this.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the generation (round N uses seed + N).",
)
@_options(_ENGINE_OPTIONS)
@_options(_HEAD_OPTIONS)
@click.option("--overwrite", is_flag=True, help="Regenerate rounds left by an earlier boost.")
@click.option("--json", "as_json", is_flag=True, help="Print boost.json instead of a table.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@_handle_errors
def boost(
    task_file: Path,
    real: Path,
    validation: Path,
    test: Path | None,
    text_column: str,
    label_column: str,
    out: Path,
    rounds: int,
    targets: int,
    variants: int,
    min_gain: float,
    seed: int,
    model: str | None,
    retries: int,
    overwrite: bool,
    as_json: bool,
    quiet: bool,
    **head_options: Any,
) -> None:
    """Target the classifier's mistakes: generate close variants of the validation
    examples it gets wrong (or is least sure of), with their true label, retrain, and
    keep a round only if validation macro-F1 improves. Prints the curve per round.

    Each round is a run folder (resumable) under OUT; the final classifier is OUT/model.
    Validation picks and judges the rounds, so its score is optimistic: give --test for
    a score no round has seen.

    \b
    Example:
      localgen boost examples/support-tickets/task.toml --real train.csv \\
          --validation val.csv --test test.csv --out runs/boost --rounds 3
    """
    from localgen.config import BoostConfig
    from localgen.jobs.boost import boost as run_boost
    from localgen.jobs.boost import curve_table

    engine = _engine(seed, head_options)  # takes the engine options out of head_options
    config = BoostConfig(
        task_path=task_file,
        real=real,
        validation=validation,
        test=test,
        out=out,
        rounds=rounds,
        targets=targets,
        variants=variants,
        min_gain=min_gain,
        text_column=text_column,
        label_column=label_column,
        seed=seed,
        model=model,
        engine=engine,
        max_retries=retries,
        overwrite=overwrite,
        settings=_train_settings(seed=seed, **head_options),
    )
    result = run_boost(config, say=(lambda _: None) if quiet else _echo_err)
    click.echo(json.dumps(result, indent=2) if as_json else curve_table(result))


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    required=True,
    help="File to write; its suffix picks the format unless --format is given.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["parquet", "jsonl", "csv"]),
    default=None,
    help="parquet, jsonl or csv. [default: from --out's suffix]",
)
@click.option(
    "--rows",
    type=click.Choice(ROW_SOURCES),
    default="auto",
    show_default=True,
    help="auto: curated.parquet when curate has run, else all rows; curated; raw.",
)
@click.option(
    "--columns",
    type=click.Choice(["all", "minimal"]),
    default="all",
    show_default=True,
    help="all: text, label and every provenance column; minimal: text and label.",
)
@_handle_errors
def export(run_dir: Path, out: Path, fmt: str | None, rows: str, columns: str) -> None:
    """Write a run's rows as Parquet, JSONL or CSV for other tools.

    The file loads directly with polars (pl.read_parquet / read_ndjson / read_csv),
    pandas (read_parquet / read_json(lines=True) / read_csv) and Hugging Face datasets
    (load_dataset("parquet" | "json" | "csv", data_files=FILE)). In CSV, the list
    columns (positive_ids, negative_ids) are JSON arrays.

    \b
    Example:
      localgen export runs/tickets --out tickets.jsonl
      localgen export runs/tickets --out train.csv --columns minimal --rows curated
    """
    from localgen.generation.store import export_rows

    out, n = export_rows(run_dir, out, fmt, rows, columns)
    _echo_err(f"{n} rows")
    click.echo(str(out))


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    Example:
      localgen completion bash > ~/.local/share/bash-completion/completions/localgen
      eval "$(localgen completion zsh)"       # in ~/.zshrc
      localgen completion fish > ~/.config/fish/completions/localgen.fish
    """
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None
    click.echo(completer(cli, {}, "localgen", "_LOCALGEN_COMPLETE").source())


@cli.command()
@click.option(
    "--model",
    "-m",
    envvar="LOCALGEN_MODEL",
    default=None,
    help="Local model folder or a name under ./models/ or the localgen home. "
    "[default: the built-in model; env LOCALGEN_MODEL]",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Anything but loopback exposes the model to the network.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8000,
    show_default=True,
    help="TCP port to listen on.",
)
@click.option(
    "--name",
    default=None,
    help="The model name clients ask for. [default: the model folder's name]",
)
@click.option(
    "--backend",
    type=click.Choice(["guidance", "xgrammar", "outlines"]),
    default="guidance",
    show_default=True,
    help="vLLM's structured-output backend, one for the whole server. guidance compiles "
    "the row JSON schemas (clients' --backend json_schema, the default); xgrammar takes "
    "localgen's row grammars (clients' --backend grammar) but fails on the row schemas.",
)
@click.option(
    "--max-model-len",
    type=click.IntRange(min=256),
    default=2048,
    show_default=True,
    help="Longest prompt + answer the server accepts, in tokens.",
)
@click.option(
    "--tensor-parallel-size",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="GPUs one copy of the model is split over (vLLM's tensor parallelism).",
)
@click.option(
    "--data-parallel-size",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Copies of the model behind the one server, each on its own GPUs.",
)
@_handle_errors
def serve(
    model: str | None,
    host: str,
    port: int,
    name: str | None,
    backend: str,
    max_model_len: int,
    tensor_parallel_size: int,
    data_parallel_size: int,
) -> None:
    """Serve a local model with vLLM's OpenAI-compatible server, on this machine only.

    The team's other tools (and `localgen generate --engine openai`) can then use it. It
    runs offline with the settings of localgen's own vLLM engine, and stops on Ctrl-C.

    \b
    Example:
      localgen serve --port 8000 &
      localgen generate task.toml --out runs/t --engine openai \\
          --base-url http://127.0.0.1:8000/v1
    """
    from localgen.config import ServeConfig
    from localgen.engines.server import serve as run_server
    from localgen.models.resolve import resolve_model

    ref = resolve_model(model, _echo_err)
    config = ServeConfig(
        host=host,
        port=port,
        backend=backend,
        max_model_len=max_model_len,
        name=name,
        tensor_parallel_size=tensor_parallel_size,
        data_parallel_size=data_parallel_size,
    )
    sys.exit(run_server(ref, config, _echo_err))


@cli.group()
def models() -> None:
    """List, import, check and carry local models (nothing is ever downloaded).

    \b
    Example (the air-gap workflow):
      localgen models bundle models/my-model --out my-model.tar   # connected machine
      localgen models unbundle my-model.tar                       # isolated machine
      localgen generate task.toml --out runs/t --model my-model
    """


def _size(n: object) -> str:
    if not isinstance(n, int):
        return "-"
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_handle_errors
def models_list(as_json: bool) -> None:
    """The built-in model and the model folders under ./models/ and the localgen home
    (LOCALGEN_HOME/models, where import and unbundle put them), with size and
    architecture.

    \b
    Example:
      localgen models list
      localgen models list --json | jq -r '.[].name'
    """
    from localgen.models.resolve import list_models

    found = list_models()
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    rows = [("name", "source", "size", "architecture", "checksums", "path")]
    for m in found:
        rows.append(
            (
                str(m["name"]),
                str(m["source"]),
                _size(m["size_bytes"]) if m["prepared"] else "not prepared",
                str(m["architecture"]),
                "yes" if m["checksums"] else "no",
                str(m["path"]),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])


@models.command("import")
@click.argument("gguf_file", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="Folder name. [default: the file's name]")
@click.option("--overwrite", is_flag=True, help="Replace a model of that name.")
@_handle_errors
def models_import(gguf_file: Path, name: str | None, overwrite: bool) -> None:
    """Convert a GGUF file into a model folder vLLM can load, with a checksum manifest.

    The folder goes under LOCALGEN_HOME/models/NAME; use it with --model NAME. Quantized
    weights are dequantized (vLLM's CPU build cannot run GGUF).

    \b
    Example:
      localgen models import ~/Downloads/qwen2.5-0.5b-instruct-q8_0.gguf --name qwen-0.5b
    """
    from localgen.models.resolve import import_gguf

    folder = import_gguf(gguf_file, name, overwrite, say=_echo_err)
    click.echo(f"{folder}: imported; use --model {folder.name}")


@models.command("bundle")
@click.argument("model", required=False)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    required=True,
    help="The archive to write (.tar).",
)
@_handle_errors
def models_bundle(model: str | None, out: Path) -> None:
    """Pack MODEL (weights, tokenizer and a SHA-256 manifest) into one archive to carry
    across an air gap. MODEL is a folder or a name (default: the built-in model).

    \b
    Example:
      localgen models bundle models/my-model --out /media/usb/my-model.tar
    """
    from localgen.models.resolve import bundle

    archive, files, size = bundle(model, out)
    click.echo(f"{archive}: {files} files, {_size(size)}; unpack with `localgen models unbundle`")


@models.command("unbundle")
@click.argument("archive", type=click.Path(path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace a model of that name.")
@click.option(
    "--dest",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder to put the model in. [default: LOCALGEN_HOME/models]",
)
@_handle_errors
def models_unbundle(archive: Path, overwrite: bool, dest: Path | None) -> None:
    """Unpack a bundle, check every file against its manifest, and only then install it.
    A damaged copy installs nothing.

    \b
    Example:
      localgen models unbundle /media/usb/my-model.tar
      localgen generate task.toml --out runs/t --model my-model
    """
    from localgen.models.resolve import unbundle

    folder = unbundle(archive, overwrite, dest)
    click.echo(f"{folder}: verified and installed; use --model {folder.name}")


@models.command("verify")
@click.argument("model", required=False)
@click.option(
    "--write",
    is_flag=True,
    help="Record the checksums of a trusted copy instead of checking them.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_handle_errors
def models_verify(model: str | None, write: bool, as_json: bool) -> None:
    """Check every file of MODEL against its checksum manifest (SHA-256).

    MODEL is a folder or a name under ./models/ (default: the built-in model). Exit code 1
    names the files that are missing or changed. generate also verifies a folder that has
    a manifest before it starts.

    \b
    Example:
      localgen models verify
      localgen models verify /srv/models/qwen2.5-7b-instruct --write
    """
    from localgen.models.resolve import CHECKSUMS_FILE, verify_model

    folder, n = verify_model(model, write)
    verb = "recorded" if write else "verified"
    if as_json:
        click.echo(json.dumps({"model": str(folder), "files": n, "result": verb}))
    else:
        click.echo(f"{folder}: {n} files {verb} ({CHECKSUMS_FILE})")


def main() -> None:
    """Console-script entry point."""
    apply_offline_env()  # before anything can import huggingface_hub, transformers or vLLM
    try:
        cli.main(prog_name="localgen")
    except KeyboardInterrupt:  # outside a command, e.g. while importing
        _echo_err(INTERRUPTED)
        sys.exit(130)


if __name__ == "__main__":
    main()
