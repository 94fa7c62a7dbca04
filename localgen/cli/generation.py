"""Commands of the generation stage: plan, generate, show, export."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import click

from localgen.cli.groups import engine_options, planned
from localgen.cli.options import (
    check_labels_option,
    echo_err,
    fit_margin_option,
    handle_errors,
    json_option,
    max_model_len_option,
    model_option,
    out_option,
    overwrite_option,
    quiet_option,
    retries_option,
    rows_option,
    say,
    strict_option,
)
from localgen.config import EngineSettings, GenerateConfig


def _print_plan(config: GenerateConfig, n_prompts: int, as_json: bool) -> None:
    from localgen.generation.prepare import LOCAL_ENGINES, prepare
    from localgen.generation.show import plan_summary

    # The model's tokenizer measures the prompts; the built-in model is not converted here.
    prepared = prepare(config, resolve=False)
    if prepared.model is None and config.engine.name in LOCAL_ENGINES:
        prepared.plan.notes.append(
            "prompts not measured against the context: the built-in model is prepared "
            "on the first generate"
        )
    click.echo(plan_summary(prepared.plan, n_prompts, as_json))


@click.command("plan")
@handle_errors
@planned
@click.option(
    "--prompts",
    "n_prompts",
    type=click.IntRange(min=0),
    default=None,
    help="Prompts to print. [default: one per strategy]",
)
@model_option
@max_model_len_option
@json_option("the plan as one JSON object")
def plan_command(
    planned: GenerateConfig,
    n_prompts: int | None,
    model: str | None,
    max_model_len: int | None,
    as_json: bool,
) -> None:
    """Print what a run would ask for: rows per label and strategy, and example prompts.

    Loads no LLM and writes nothing. The model's tokenizer measures every prompt against
    its context (the contrastive strategy also loads the small sentence encoder).

    \b
    Example:
      localgen plan examples/legal-clauses/task.toml --seed-data examples/legal-clauses/seed.csv
      localgen plan task.toml --strategy attributes --strategy hierarchical --prompts 4
    """
    engine = replace(planned.engine, max_model_len=max_model_len)
    config = replace(planned, model=model, engine=engine)
    _print_plan(config, n_prompts if n_prompts is not None else -1, as_json)


@click.command()
@handle_errors
@planned
@out_option("Run folder to write (synthetic.parquet, manifest.json, shards/).")
@model_option
@engine_options
@retries_option
@check_labels_option
@fit_margin_option
@click.option(
    "--format",
    "formats",
    type=click.Choice(["parquet", "jsonl"]),
    multiple=True,
    default=GenerateConfig.formats,
    show_default=True,
    help="Output table format; repeat for both.",
)
@click.option(
    "--shard-rows",
    type=click.IntRange(min=1, max=100_000),
    default=GenerateConfig.shard_rows,
    show_default=True,
    help="Rows per shard on disk: a killed run loses at most this many finished rows "
    "(or 30 s of work).",
)
@click.option(
    "--window",
    type=click.IntRange(min=1, max=1_000_000),
    default=GenerateConfig.window,
    show_default=True,
    help="Requests in flight: the engine takes more as each finishes, so its batch stays "
    "full; memory holds this many, however large the run.",
)
@overwrite_option()
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the plan (counts and example prompts); load no model, write nothing.",
)
@json_option("a JSON summary (counts, output files, timings) instead of the file names")
@strict_option
@quiet_option
def generate(
    planned: GenerateConfig,
    out: Path,
    model: str | None,
    engine: EngineSettings,
    retries: int,
    check_labels: bool,
    fit_margin: bool,
    formats: tuple[str, ...],
    shard_rows: int,
    window: int,
    overwrite: bool,
    dry_run: bool,
    as_json: bool,
    strict: bool,
    quiet: bool,
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

    config = replace(
        planned,
        out=out,
        model=model,
        engine=engine,
        max_retries=retries,
        check_labels=check_labels,
        fit_margin=fit_margin,
        formats=tuple(dict.fromkeys(formats)),
        shard_rows=shard_rows,
        window=window,
        overwrite=overwrite,
        quiet=quiet,
        strict=strict,
    )
    if dry_run:
        _print_plan(config, -1, as_json=as_json)
        return
    result = run_generate(config, say=say(quiet))
    echo_err(result.message())
    click.echo(result.render(as_json))
    sys.exit(result.exit_code)


@click.command()
@handle_errors
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--limit",
    "-l",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Rows to print.",
)
@rows_option("auto: the curated rows when curate has run, else all rows; curated; raw.")
@json_option("rows as JSON lines, all columns")
def show(run_dir: Path, limit: int, rows: str, as_json: bool) -> None:
    """Print a count per label and a sample of rows spread over the run (of the rows
    stored so far, while it runs or after an interruption; of a curated run, the rows
    curation kept unless --rows raw).

    \b
    Example:
      localgen show runs/tickets --limit 5
    """
    from localgen.generation.show import head

    click.echo(head(run_dir, limit, as_json, rows))


@click.command()
@handle_errors
@click.argument("run_dir", type=click.Path(path_type=Path))
@out_option("File to write; its suffix picks the format unless --format is given.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["parquet", "jsonl", "csv"]),
    default=None,
    help="parquet, jsonl or csv. [default: from --out's suffix]",
)
@rows_option("auto: curated.parquet when curate has run, else all rows; curated; raw.")
@click.option(
    "--columns",
    type=click.Choice(["all", "minimal"]),
    default="all",
    show_default=True,
    help="all: text, label and every provenance column; minimal: text and label.",
)
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

    written, n = export_rows(run_dir, out, fmt, rows, columns)
    echo_err(f"{n} rows")
    click.echo(str(written))


COMMANDS = [plan_command, generate, show, export]
