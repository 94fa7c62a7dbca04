"""Commands of the classifier stage: train, evaluate, predict."""

from __future__ import annotations

import json
from pathlib import Path

import click

from localgen.cli.groups import train_options
from localgen.cli.options import (
    columns,
    data_file,
    echo_err,
    handle_errors,
    json_option,
    out_option,
    quiet_option,
    resamples_option,
    rows_option,
    say,
    seed_option,
    strict_option,
    text_column,
)
from localgen.config import TrainConfig, TrainSettings


@click.command()
@handle_errors
@data_file("--real", "Real labeled training data (CSV, JSONL or Parquet).")
@data_file(
    "--synthetic", "A run folder: its curated rows when curate has run (see --rows), else all rows."
)
@data_file(
    "--documents",
    "A label folder (localgen label: its chosen documents) or a labeled file of documents.",
)
@data_file(
    "--task",
    "A task file: each label's description joins training as one row of that label "
    "(see --descriptions-weight).",
)
@out_option("Model folder to write (replaced whole if it holds a model).")
@columns("--real")
@rows_option("Rows of --synthetic; auto: curated.parquet when curate has run, else all rows.")
@train_options
@seed_option("Seed of the encoder's training (fine-tune, setfit) and of auto's folds.")
@json_option("the model's model.json, not its folder")
@strict_option
@quiet_option
def train(
    real: Path | None,
    synthetic: Path | None,
    documents: Path | None,
    task: Path | None,
    out: Path,
    text_column: str,
    label_column: str,
    rows: str,
    settings: TrainSettings,
    seed: int,  # already in settings: train_options reads --seed
    as_json: bool,
    strict: bool,
    quiet: bool,
) -> None:
    """Train a text classifier on real rows, synthetic rows, labelled documents, or a mix.

    The default is the built-in sentence encoder, frozen, with a logistic-regression head
    and balanced class weights: seconds on a CPU. --method setfit first tunes the encoder
    on pairs of rows (minutes on a CPU; the most accurate at a few rows per label). The
    model folder holds the head weights, labels.json, the resolved settings, a format
    version and, when the encoder was trained, the encoder.

    \b
    Example:
      localgen train --real data/train.csv --synthetic runs/tickets --out models/tickets
      localgen train --real data/train.csv --out models/real-only --method setfit
      localgen train --real data/train.csv --documents runs/inbox --out models/inbox
      localgen train --real data/train.csv --task task.toml --out models/described
    """
    from localgen.classify.train import train as run_training
    from localgen.classify.train import trained_message

    config = TrainConfig(
        out, real, synthetic, rows, text_column, label_column, settings, strict, documents, task
    )
    model = run_training(config, say=say(quiet))
    echo_err(trained_message(model))
    click.echo(
        json.dumps({"model": str(out)} | model.info, indent=2, ensure_ascii=False)
        if as_json
        else str(out)
    )


@click.command()
@handle_errors
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.argument("test_file", type=click.Path(path_type=Path))
@columns("TEST_FILE")
@resamples_option
@json_option("the scores as one JSON object")
@strict_option
def evaluate(
    model_dir: Path,
    test_file: Path,
    text_column: str,
    label_column: str,
    resamples: int,
    as_json: bool,
    strict: bool,
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

    result = run_evaluation(
        model_dir, test_file, text_column, label_column, resamples, echo_err, strict
    )
    click.echo(json.dumps(result, indent=2, ensure_ascii=False) if as_json else render(result))


@click.command()
@handle_errors
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.argument("file", type=click.Path(path_type=Path))
@text_column("FILE")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "jsonl", "csv"]),
    default="table",
    show_default=True,
    help="table: for reading; jsonl/csv: one row per text with every probability.",
)
def predict(model_dir: Path, file: Path, text_column: str, fmt: str) -> None:
    """Label the texts of FILE (CSV, JSONL, Parquet, or .txt with one text per line).

    \b
    Example:
      localgen predict models/tickets inbox.csv
      localgen predict models/tickets inbox.txt --format jsonl > labelled.jsonl
    """
    from localgen.classify.train import predict as run_prediction
    from localgen.classify.train import render_predictions

    click.echo(render_predictions(run_prediction(model_dir, file, text_column), fmt))


COMMANDS = [train, evaluate, predict]
