"""Commands that run whole jobs: run (generate, curate, train three ways, compare) and
boost (rounds of generating variants of the classifier's mistakes)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from localgen.cli.groups import engine_options, train_options
from localgen.cli.options import (
    check_labels_option,
    columns,
    data_file,
    fit_margin_option,
    handle_errors,
    instructions_option,
    json_option,
    model_option,
    out_option,
    overwrite_option,
    quiet_option,
    resamples_option,
    retries_option,
    rows_options,
    run_seed_option,
    say,
    seed_option,
    strict_option,
    task_argument,
)
from localgen.config import (
    KEEP_BUDGET,
    BoostConfig,
    EngineSettings,
    GenerateConfig,
    RunConfig,
    TrainSettings,
)
from localgen.errors import UsageError


def _scores_rows(settings: TrainSettings, engine: EngineSettings, check_labels: bool) -> bool:
    """Whether the rows must get their fit scores (--synthetic-weight channel); refused
    in one line before any work where they cannot."""
    if settings.synthetic_weight != "channel":
        return False
    if not check_labels:
        raise UsageError("--synthetic-weight channel needs the label check: drop --no-check-labels")
    if engine.name not in ("vllm", "fake") or engine.replicas > 1 or engine.ray_address:
        raise UsageError(
            "--synthetic-weight channel needs the vllm engine in this process "
            "(no --replicas, no --ray-address)"
        )
    return True


@click.command("run")
@handle_errors
@task_argument
@data_file(
    "--real",
    "Real labeled training data: shown to the LLM as examples, and trained on.",
    required=True,
)
@data_file(
    "--test",
    "Real labeled test data: every classifier is scored on it; curation drops "
    "synthetic rows too close to it.",
    required=True,
)
@data_file(
    "--documents",
    "Your unlabeled documents (a table, a .txt of one a line, or a folder of .txt), "
    "labelled by the run's model, or a folder localgen label wrote: the run also trains "
    "on real + documents and on all three.",
)
@columns("--real, --test and --documents")
@out_option("Folder for the run, the models, comparison.json and report.html.")
@rows_options
@instructions_option
@run_seed_option
@model_option
@engine_options
@retries_option
@check_labels_option
@fit_margin_option
@click.option(
    "--keep",
    type=click.IntRange(min=1),
    default=None,
    help="Grow the run in rounds until N rows of each label pass curation (the first "
    "round: --count, or the task's count), and train on the first N of each. "
    "[default: train on every row that passes]",
)
@click.option(
    "--keep-budget",
    type=click.FloatRange(min=1),
    default=KEEP_BUDGET,
    show_default=True,
    help="--keep: plan at most this many times N rows per label, all rounds together; a "
    "label still short then trains on what passed, with a warning.",
)
@train_options
@resamples_option
@overwrite_option()
@json_option("comparison.json instead of a table")
@strict_option
@quiet_option
def run_command(
    task_file: Path,
    real: Path,
    test: Path,
    documents: Path | None,
    text_column: str,
    label_column: str,
    out: Path,
    count: int | None,
    strategies: tuple[str, ...],
    balance: str | int | None,
    instructions: str,
    seed: int,
    model: str | None,
    engine: EngineSettings,
    retries: int,
    check_labels: bool,
    fit_margin: bool,
    keep: int | None,
    keep_budget: float,
    settings: TrainSettings,
    resamples: int,
    overwrite: bool,
    as_json: bool,
    strict: bool,
    quiet: bool,
) -> None:
    """The whole job: generate, curate, then train on real only, synthetic only and
    real + synthetic, and score all three on the same real test data.

    Prints the comparison (macro-F1 and accuracy with 95% bootstrap intervals, and the
    paired difference against real only) and writes it to OUT/comparison.json and
    OUT/report.html. Rerunning after an interruption resumes the generation. With
    --keep N, the run grows in rounds until N rows of each label pass curation. With
    --documents, your unlabeled documents are labelled on the same engine (as localgen
    label does) and the most confident are trained on too.

    \b
    Example:
      localgen run examples/support-tickets/task.toml \\
          --real examples/support-tickets/seed.csv --test examples/support-tickets/test.csv \\
          --text-column message --label-column team --out runs/tickets -n 20 \\
          --strategy few-shot --strategy contrastive
    """
    from localgen.jobs.run import comparison_table
    from localgen.jobs.run import run as run_pipeline

    generation = GenerateConfig(
        task_path=task_file,
        out=out,
        count=count,
        strategy=strategies,
        balance=balance,
        seed_data=real,
        text_column=text_column,
        label_column=label_column,
        instructions=instructions,
        seed=seed,
        model=model,
        engine=engine,
        max_retries=retries,
        check_labels=check_labels,
        # the channel weight reads the rows' fit_posterior: score them
        fit_margin=fit_margin or _scores_rows(settings, engine, check_labels),
        overwrite=overwrite,
        quiet=quiet,
        strict=strict,
    )
    config = RunConfig(generation, test, settings, resamples, keep, keep_budget, documents)
    comparison = run_pipeline(config, say=say(quiet))
    click.echo(
        json.dumps(comparison, indent=2, ensure_ascii=False)
        if as_json
        else comparison_table(comparison)
    )


@click.command()
@handle_errors
@task_argument
@data_file("--real", "Real labeled training data.", required=True)
@data_file(
    "--validation",
    "Real labeled validation data: its mistakes are the anchors, its macro-F1 "
    "decides whether a round is kept.",
    required=True,
)
@data_file("--test", "Real labeled test data no round sees: the unbiased score, per round.")
@data_file(
    "--documents",
    "A label folder (localgen label: its chosen documents) or a labeled file of documents: "
    "trained on with the real rows from round 0.",
)
@columns("--real, --validation and --test")
@out_option("Folder for the rounds, the final model and boost.json.")
@click.option(
    "--rounds",
    type=click.IntRange(min=0, max=50),
    default=BoostConfig.rounds,
    show_default=True,
    help="Rounds of generate, retrain, keep-if-better.",
)
@click.option(
    "--targets",
    type=click.IntRange(min=1),
    default=BoostConfig.targets,
    show_default=True,
    help="Validation examples to write variants of, per round: misclassified first, then "
    "the least confident.",
)
@click.option(
    "--variants",
    type=click.IntRange(min=1),
    default=BoostConfig.variants,
    show_default=True,
    help="Rows to generate per target.",
)
@click.option(
    "--min-gain",
    type=click.FloatRange(min=0),
    default=BoostConfig.min_gain,
    show_default=True,
    help="Keep a round only if validation macro-F1 rises by more than this.",
)
@seed_option("Seed of the generation (round N uses seed + N).")
@model_option
@engine_options
@retries_option
@check_labels_option
@fit_margin_option
@train_options
@overwrite_option("Regenerate rounds left by an earlier boost.")
@json_option("boost.json instead of a table")
@strict_option
@quiet_option
def boost(
    task_file: Path,
    real: Path,
    validation: Path,
    test: Path | None,
    documents: Path | None,
    text_column: str,
    label_column: str,
    out: Path,
    rounds: int,
    targets: int,
    variants: int,
    min_gain: float,
    seed: int,
    model: str | None,
    engine: EngineSettings,
    retries: int,
    check_labels: bool,
    fit_margin: bool,
    settings: TrainSettings,
    overwrite: bool,
    as_json: bool,
    strict: bool,
    quiet: bool,
) -> None:
    """Target the classifier's mistakes: generate close variants of the validation
    examples it gets wrong (or is least sure of), with their true label, retrain, and
    keep a round only if validation macro-F1 improves. Prints the curve per round.

    Each round is a run folder (resumable) under OUT; the final classifier is OUT/model.
    Validation picks and judges the rounds, so its score is optimistic: give --test for
    a score no round has seen. The rounds are judged by a frozen-encoder head; --method
    fine-tune or setfit trains the final classifier that way on the rows kept.

    \b
    Example:
      localgen boost examples/support-tickets/task.toml --real train.csv \\
          --validation val.csv --test test.csv --out runs/boost --rounds 3
    """
    from localgen.jobs.boost import boost as run_boost
    from localgen.jobs.boost import curve_table

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
        check_labels=check_labels,
        fit_margin=fit_margin or _scores_rows(settings, engine, check_labels),
        overwrite=overwrite,
        settings=settings,
        strict=strict,
        documents=documents,
    )
    result = run_boost(config, say=say(quiet))
    click.echo(json.dumps(result, indent=2, ensure_ascii=False) if as_json else curve_table(result))


COMMANDS = [run_command, boost]
