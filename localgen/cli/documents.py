"""Commands of the documents stage: label."""

from __future__ import annotations

from pathlib import Path

import click

from localgen.cli.groups import engine_options
from localgen.cli.options import (
    columns,
    data_file,
    echo_err,
    handle_errors,
    json_option,
    model_option,
    out_option,
    overwrite_option,
    quiet_option,
    say,
    seed_option,
)
from localgen.config import EngineSettings, LabelConfig


@click.command()
@handle_errors
@click.argument("documents", type=click.Path(path_type=Path))
@click.option(
    "--task",
    "task_path",
    type=click.Path(path_type=Path),
    required=True,
    help="The task file: its labels, their descriptions and its context.",
)
@data_file(
    "--seed-data",
    "Real labeled rows (CSV, JSONL or Parquet): examples in the prompt, and the few-shot "
    "classifier whose agreement decides which documents are chosen.",
)
@columns("DOCUMENTS and --seed-data")
@out_option("Folder to write (labeled.parquet, manifest.json, answers/).")
@click.option(
    "--examples",
    type=click.IntRange(min=0, max=64),
    default=LabelConfig.examples,
    show_default=True,
    help="Real examples of each label in the prompt (fewer where the context is short).",
)
@click.option(
    "--per-label",
    type=click.IntRange(min=0),
    default=LabelConfig.per_label,
    help="Documents chosen to train on per label at most, the most confident first. "
    "Default: every document the model and the few-shot classifier agree on (without "
    "--seed-data: the 64 most confident per label).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Label only the first N documents.",
)
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=None,
    help="Label N documents drawn at random (with --seed).",
)
@seed_option("Seed of the examples shown and of --sample.")
@model_option
@engine_options
@click.option(
    "--format",
    "formats",
    type=click.Choice(["parquet", "csv"]),
    multiple=True,
    default=LabelConfig.formats,
    show_default=True,
    help="Output table format; repeat for both.",
)
@click.option(
    "--window",
    type=click.IntRange(min=1, max=1_000_000),
    default=LabelConfig.window,
    show_default=True,
    help="Documents in flight: the engine takes more as each is answered.",
)
@overwrite_option("Replace the labels in --out (made for other inputs) instead of resuming.")
@json_option("a JSON summary (counts, output files, timings) instead of the file names")
@quiet_option
def label(
    documents: Path,
    task_path: Path,
    seed_data: Path | None,
    text_column: str,
    label_column: str,
    out: Path,
    examples: int,
    per_label: int | None,
    limit: int | None,
    sample: int | None,
    seed: int,
    model: str | None,
    engine: EngineSettings,
    formats: tuple[str, ...],
    window: int,
    overwrite: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Label your unlabeled DOCUMENTS with the local model, for training.

    DOCUMENTS is a table with a text column (CSV, JSONL, Parquet), a .txt file of one
    document a line, or a folder of .txt files. Each document is asked about with a
    constraint that admits only the task's labels; the answer's log-probabilities give
    every label a probability. With --seed-data, real examples are shown in the prompt
    and a few-shot classifier gives its own view: the documents both agree on, most
    confident first, are chosen to train on (`localgen train --documents DIR`).
    Rerunning the same command after an interruption resumes.

    \b
    Example:
      localgen label inbox.csv --task examples/support-tickets/task.toml \\
          --seed-data examples/support-tickets/seed.csv \\
          --text-column message --label-column team --out runs/inbox
    """
    from localgen.documents.label import label_documents

    config = LabelConfig(
        documents=documents,
        task_path=task_path,
        out=out,
        seed_data=seed_data,
        text_column=text_column,
        label_column=label_column,
        examples=examples,
        per_label=per_label,
        limit=limit,
        sample=sample,
        seed=seed,
        model=model,
        engine=engine,
        formats=tuple(dict.fromkeys(formats)),
        window=window,
        overwrite=overwrite,
        quiet=quiet,
    )
    result = label_documents(config, say=say(quiet))
    echo_err(result.message())
    click.echo(result.render(as_json))


COMMANDS = [label]
