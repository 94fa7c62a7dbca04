"""The mistake-targeting loop: which examples it targets, that generation is anchored on
them, and that a round is kept exactly when validation macro-F1 improves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from localgen.classify.classifier import TextClassifier
from localgen.classify.train import evaluate
from localgen.cli import cli
from localgen.data import read_labeled
from localgen.errors import TaskError
from localgen.jobs.boost import pick_targets
from localgen.planning.plan import PlanSpec, build_plan
from localgen.planning.task import load_task
from tests.helpers import EXAMPLE_SEED, EXAMPLE_TASK, EXAMPLE_TEST, BagOfWords

COLUMNS = ["--text-column", "message", "--label-column", "team"]


def test_targets_are_the_misclassified_then_the_least_confident() -> None:
    labels = ("a", "b")
    proba = np.array(
        [
            [0.9, 0.1],  # a, right and sure
            [0.4, 0.6],  # a, wrong (true p 0.4)
            [0.55, 0.45],  # a, right but unsure (true p 0.55)
            [0.2, 0.8],  # b, right
            [0.95, 0.05],  # b, wrong (true p 0.05)
        ]
    )
    truth = ["a", "a", "a", "b", "b"]
    assert pick_targets(proba, labels, truth, 3) == [4, 1, 2]
    assert pick_targets(proba, labels, truth, 10) == [4, 1, 2, 3, 0]


def test_anchored_plan_writes_n_rows_per_anchor_starting_from_it(tmp_path: Path) -> None:
    task = load_task(EXAMPLE_TASK)
    seed = read_labeled(EXAMPLE_SEED, "message", "team")
    anchors_file = tmp_path / "anchors.csv"
    test = pl.read_csv(EXAMPLE_TEST)
    test.filter(pl.col("team").is_in(["bug", "billing"])).head(12).tail(3).write_csv(anchors_file)
    anchors = read_labeled(anchors_file, "message", "team")
    plan = build_plan(
        task, PlanSpec(seed=1, count=2, seed_data=seed, anchors=anchors, encoder=BagOfWords())
    )
    requests = plan.requests + [f.request for f in plan.followups]
    assert plan.rows == 6 and {r.strategy for r in requests} == {"contrastive"}
    per_label = anchors.frame.group_by("label").len()
    assert plan.counts() == {lab: {"contrastive": 2 * n} for lab, n in per_label.iter_rows()}
    # Every anchor is the first positive of exactly two requests, shown in the prompt.
    firsts = sorted(r.positive_ids[0] for r in requests)
    assert firsts == sorted(anchors.frame["id"].to_list() * 2)
    texts = dict(anchors.frame.select("id", "text").iter_rows())
    for r in plan.requests:
        assert texts[r.positive_ids[0]] in r.prompt
    with pytest.raises(TaskError, match="contrastive strategy only"):
        build_plan(task, PlanSpec(strategy=["few-shot"], seed_data=seed, anchors=anchors))


def test_boost_keeps_a_round_exactly_when_validation_improves(tmp_path: Path) -> None:
    test = pl.read_csv(EXAMPLE_TEST)
    validation, held_out = test[::2], test[1::2]
    validation.write_csv(tmp_path / "val.csv")
    held_out.write_csv(tmp_path / "test.csv")
    out = tmp_path / "boost"
    args = [
        "boost",
        str(EXAMPLE_TASK),
        "--real",
        str(EXAMPLE_SEED),
        "--validation",
        str(tmp_path / "val.csv"),
        "--test",
        str(tmp_path / "test.csv"),
        *COLUMNS,
        "--out",
        str(out),
        "--engine",
        "fake",
        "--rounds",
        "3",
        "--targets",
        "4",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "boost.json").read_text())
    curve = report["curve"]
    assert [e["round"] for e in curve] == [0, 1, 2, 3]

    # Round 1 targets what the round-0 model gets wrong or is least sure of.
    round0 = TextClassifier.load(out / "models" / "round-0")
    val = read_labeled(tmp_path / "val.csv", "message", "team")
    proba = round0.proba(val.frame["text"].to_list())
    expected = pick_targets(proba, round0.labels, val.frame["label"].to_list(), 4)
    anchors = pl.read_csv(out / "round-1.anchors.csv")
    assert anchors["message"].to_list() == [val.frame["text"][i] for i in expected]
    rows = pl.read_parquet(out / "round-1" / "synthetic.parquet")
    anchor_ids = set(read_labeled(out / "round-1.anchors.csv", "message", "team").frame["id"])
    assert rows.height == 8 and {r[0] for r in rows["positive_ids"]} == anchor_ids

    # The rule: kept iff validation macro-F1 beats the best kept so far.
    best = curve[0]["validation_macro_f1"]
    synthetic = 0
    for entry in curve[1:]:
        assert entry["kept"] == (entry["validation_macro_f1"] > best)
        if entry["kept"]:
            best = entry["validation_macro_f1"]
            synthetic += entry["added_rows"]
    final = report["final"]
    assert final["validation_macro_f1"] == best and final["synthetic_rows"] == synthetic
    assert final["train_rows"] == 24 + synthetic
    # The final model scores what the curve says on both sets.
    scored = evaluate(out / "model", tmp_path / "val.csv", "message", "team", resamples=0)
    assert scored["macro_f1"]["value"] == best
    assert "round" in result.stdout and "final model" in result.stdout


def test_boost_judges_rounds_frozen_and_trains_the_final_model_with_the_method(
    tmp_path: Path,
) -> None:
    test = pl.read_csv(EXAMPLE_TEST)
    test[::2].write_csv(tmp_path / "val.csv")
    test[1::2].write_csv(tmp_path / "test.csv")
    out = tmp_path / "boost"
    files = ["--real", str(EXAMPLE_SEED), "--validation", str(tmp_path / "val.csv")]
    files += ["--test", str(tmp_path / "test.csv"), *COLUMNS, "--out", str(out)]
    method = ["--method", "setfit", "--pairs", "16", "--batch-size", "8"]
    result = CliRunner().invoke(
        cli, ["boost", str(EXAMPLE_TASK), *files, "--engine", "fake", "--rounds", "1", *method]
    )
    assert result.exit_code == 0, result.output
    assert TextClassifier.load(out / "models" / "round-0").method == "frozen"
    assert TextClassifier.load(out / "model").method == "setfit"
    final = json.loads((out / "boost.json").read_text())["final"]
    assert final["method"] == "setfit"
    for name, key in (
        ("val.csv", "tuned_validation_macro_f1"),
        ("test.csv", "tuned_test_macro_f1"),
    ):
        scored = evaluate(out / "model", tmp_path / name, "message", "team", resamples=0)
        assert scored["macro_f1"]["value"] == final[key]
    assert "setfit on the kept rows: validation macro-F1" in result.stdout


def test_boost_trains_on_the_chosen_documents_from_round_0(tmp_path: Path) -> None:
    test = pl.read_csv(EXAMPLE_TEST)
    test[::2].write_csv(tmp_path / "val.csv")
    documents = pl.DataFrame(
        {
            "text": [
                "We were billed for three seats but only have two users",
                "Please send the receipt for last month's payment again",
                "The invoice PDF shows the wrong company address",
                "Clicking save on a draft invoice freezes the page",
                "The mobile app logs me out every few minutes",
                "Two-factor codes never arrive on my phone",
                "Could you add a dark mode to the dashboard?",
                "It would help to export reports to Excel directly",
            ],
            "label": ["billing"] * 3
            + ["bug", "account_access", "account_access"]
            + ["feature_request"] * 2,
            "chosen": [True] * 7 + [False],  # a labeled file with a choice: its chosen rows
        }
    )
    documents.write_csv(tmp_path / "docs.csv")
    out = tmp_path / "boost"
    args = ["boost", str(EXAMPLE_TASK), "--real", str(EXAMPLE_SEED), *COLUMNS]
    args += ["--validation", str(tmp_path / "val.csv"), "--out", str(out), "--rounds", "0"]
    result = CliRunner().invoke(cli, [*args, "--documents", str(tmp_path / "docs.csv")])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "boost.json").read_text())
    assert report["documents"]["rows"] == 7
    assert report["final"]["documents_rows"] == 7 and report["final"]["train_rows"] == 24 + 7
    assert report["curve"][0]["documents_weight"]["chosen"] is not None
    assert "7 documents" in result.stdout
    model = TextClassifier.load(out / "model")
    assert sum(model.info["training"]["rows"]["documents"].values()) == 7

    documents.with_columns(pl.lit("sales").alias("label")).write_csv(tmp_path / "bad.csv")
    bad = CliRunner().invoke(cli, [*args, "--documents", str(tmp_path / "bad.csv"), "--overwrite"])
    assert bad.exit_code == 1 and "labels not in the task file: 'sales'" in bad.output
    assert "Traceback" not in bad.output
