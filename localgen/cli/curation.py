"""Commands of the curation and report stages: curate, report."""

from __future__ import annotations

import json
from pathlib import Path

import click

from localgen.cli.options import (
    columns,
    data_file,
    handle_errors,
    json_option,
    quiet_option,
    rows_option,
    say,
)
from localgen.config import CurateConfig, ReportConfig
from localgen.curation.rules import MISLABELED_ACTIONS, RULES

_REAL_HELP = "[default: the run's --seed-data]"


@click.command()
@handle_errors
@click.argument("run_dir", type=click.Path(path_type=Path))
@data_file(
    "--real",
    "Real labeled examples: for leakage, duplicates of real text and the label judge. "
    + _REAL_HELP,
)
@click.option(
    "--eval",
    "eval_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Evaluation data: rows too close to it are dropped (test-set contamination).",
)
@columns("--real and --eval")
@click.option(
    "--skip", type=click.Choice(RULES), multiple=True, help="Switch a rule off; repeat for more."
)
@click.option(
    "--min-words",
    type=click.IntRange(min=0),
    default=CurateConfig.min_words,
    show_default=True,
    help="Drop rows with fewer words.",
)
@click.option(
    "--max-words",
    type=click.IntRange(min=1),
    default=CurateConfig.max_words,
    help="Drop rows with more words. [default: no limit]",
)
@click.option(
    "--leak-words",
    type=click.IntRange(min=2),
    default=CurateConfig.leak_words,
    show_default=True,
    help="Leakage: drop rows sharing this many consecutive words with a real example.",
)
@click.option(
    "--echo-words",
    type=click.IntRange(min=2),
    default=CurateConfig.echo_words,
    show_default=True,
    help="Markup: drop rows repeating this many consecutive words of the prompt's own text.",
)
@click.option(
    "--near-duplicate",
    type=click.FloatRange(0, 1),
    default=CurateConfig.near_duplicate,
    show_default=True,
    help="Drop rows with at least this cosine to an earlier row or a real example.",
)
@click.option(
    "--contamination",
    type=click.FloatRange(0, 1),
    default=CurateConfig.contamination,
    show_default=True,
    help="Drop rows with at least this cosine to an --eval row.",
)
@click.option(
    "--inconsistent",
    type=click.Choice(["flag", "drop"]),
    default=CurateConfig.inconsistent,
    show_default=True,
    help="label-consistency: what to do with rows the generating model itself gives "
    "another label (generate's label check).",
)
@click.option(
    "--on-topic-share",
    type=click.FloatRange(0, 1, min_open=True),
    default=CurateConfig.on_topic_share,
    show_default=True,
    help="on-topic: keep this share of each label's rows, the most likely under their own "
    "prompt first (mean token log-probability); 1 keeps all.",
)
@click.option(
    "--mislabeled",
    type=click.Choice(MISLABELED_ACTIONS),
    default=CurateConfig.mislabeled,
    show_default=True,
    help="label-fidelity: what to do with rows whose label the judge disputes: keep them "
    "flagged, drop them, or drop only where it is confident (--judge-confidence) and "
    "cross-validates well on the real data (--judge-accuracy).",
)
@click.option(
    "--judge-confidence",
    type=click.FloatRange(0, 1),
    default=CurateConfig.judge_confidence,
    show_default=True,
    help="--mislabeled confident: the judge's probability for its own label.",
)
@click.option(
    "--judge-accuracy",
    type=click.FloatRange(0, 1),
    default=CurateConfig.judge_accuracy,
    show_default=True,
    help="--mislabeled confident: the judge's cross-validated accuracy on the real data.",
)
@click.option(
    "--keep",
    type=click.IntRange(min=1),
    default=None,
    help="surplus: keep at most this many rows per label, the first in row order, of "
    "those the other rules keep. [default: every one]",
)
@json_option("curation.json instead of a table")
@quiet_option
def curate(
    run_dir: Path,
    real: Path | None,
    eval_file: Path | None,
    text_column: str,
    label_column: str,
    skip: tuple[str, ...],
    min_words: int,
    max_words: int | None,
    leak_words: int,
    echo_words: int,
    near_duplicate: float,
    contamination: float,
    inconsistent: str,
    on_topic_share: float,
    mislabeled: str,
    judge_confidence: float,
    judge_accuracy: float,
    keep: int | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Drop duplicates, copies of real text, markup, test-set look-alikes and bad lengths;
    judge labels.

    Writes RUN_DIR/curated.parquet (the kept rows, with the judge's label) and
    RUN_DIR/curation.json (each rule's setting and counts, and every finding per row).
    The raw rows are not touched. Every rule runs on every row; a dropped row is charged
    to the first rule, in the order of the table printed.

    \b
    Example:
      localgen curate runs/tickets --real data/train.csv --eval data/test.csv
      localgen curate runs/tickets --skip label-fidelity --near-duplicate 0.9
    """
    from localgen.curation.curate import curate as run_curation
    from localgen.curation.curate import summary_table

    config = CurateConfig(
        run_dir=run_dir,
        real=real,
        eval=eval_file,
        text_column=text_column,
        label_column=label_column,
        skip=frozenset(skip),
        min_words=min_words,
        max_words=max_words,
        leak_words=leak_words,
        echo_words=echo_words,
        contamination=contamination,
        near_duplicate=near_duplicate,
        inconsistent=inconsistent,
        on_topic_share=on_topic_share,
        mislabeled=mislabeled,
        judge_confidence=judge_confidence,
        judge_accuracy=judge_accuracy,
        keep=keep,
    )
    summary = run_curation(config, say=say(quiet))
    click.echo(
        json.dumps(summary, indent=2, ensure_ascii=False) if as_json else summary_table(summary)
    )


@click.command()
@handle_errors
@click.argument("run_dir", type=click.Path(path_type=Path))
@data_file("--real", "Real labeled examples to compare with. " + _REAL_HELP)
@columns("--real")
@rows_option("Which rows to measure; auto: curated.parquet when curate has run, else all rows.")
@json_option("metrics.json instead of a summary")
@quiet_option
def report(
    run_dir: Path,
    real: Path | None,
    text_column: str,
    label_column: str,
    rows: str,
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
    from localgen.report.report import summary_lines, write_report

    config = ReportConfig(run_dir, real, rows, text_column, label_column)
    metrics = write_report(config, say=say(quiet))
    click.echo(
        json.dumps(metrics, indent=2, ensure_ascii=False) if as_json else summary_lines(metrics)
    )


COMMANDS = [curate, report]
