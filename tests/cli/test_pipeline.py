"""`localgen run` end to end on the fake engine: every number in the comparison can be
reproduced by the separate commands, and it reaches the report."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from localgen.classify.train import weight_phrase
from localgen.cli import cli
from localgen.data import document_id
from localgen.planning.task import load_task
from tests.helpers import EXAMPLE_SEED, EXAMPLE_TASK, EXAMPLE_TEST

COLUMNS = ["--text-column", "message", "--label-column", "team"]


def test_run_compares_three_training_sets_reproducibly(tmp_path: Path) -> None:
    out = tmp_path / "run"
    runner = CliRunner()
    args = ["run", str(EXAMPLE_TASK), "--real", str(EXAMPLE_SEED), "--test", str(EXAMPLE_TEST)]
    result = runner.invoke(
        cli, [*args, *COLUMNS, "--out", str(out), "-n", "4", "--engine", "fake", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert "real + synthetic minus real only" in result.stdout
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["test"]["rows"] == 40 and comparison["real"]["rows"] == 24
    results = comparison["results"]
    assert results["real"]["train_rows"] == 24
    assert results["synthetic"]["train_rows"] == comparison["synthetic"]["kept"]
    assert results["combined"]["train_rows"] == 24 + comparison["synthetic"]["kept"]
    combined, alone = results["combined"], results["synthetic"]
    assert combined["training_rows"]["synthetic"] == alone["training_rows"]["synthetic"]
    # Which rows curation removed, and which weight auto chose, with its fold scores.
    curation = json.loads((out / "curation.json").read_text())
    removed = comparison["synthetic"]["removed_by"]
    assert sum(removed.values()) == curation["counts"]["dropped"]
    assert comparison["synthetic"]["generated"] - sum(removed.values()) == alone["train_rows"]
    mix = combined["synthetic_weight"]
    assert mix["setting"] == "auto" and mix["chosen"] in [e["weight"] for e in mix["scores"]]
    assert f"synthetic rows weigh {weight_phrase(mix)} in real + synthetic" in result.stdout
    model = json.loads((out / "models" / "combined" / "model.json").read_text())
    assert model["training"]["synthetic_weight"] == mix
    assert results["real"]["synthetic_weight"] is None
    # The task's label descriptions: one row per label, on their own and in all of them.
    labels = load_task(EXAMPLE_TASK).label_names
    described = json.loads((out / "models" / "descriptions" / "model.json").read_text())
    assert described["training"]["rows"]["descriptions"] == {name: 1 for name in sorted(labels)}
    assert described["training"]["descriptions_weight"] == {"setting": 4.0, "chosen": 4.0}
    assert results["descriptions"]["train_rows"] == 24 + len(labels)
    assert results["all"]["train_rows"] == 24 + len(labels) + comparison["synthetic"]["kept"]
    assert "real + label descriptions minus real only" in result.stdout
    assert set(results["all"]["training_rows"]) == {"real", "descriptions", "synthetic"}

    # Each saved model, scored by `localgen evaluate`, gives the number in the comparison.
    for name in ("real", "synthetic", "combined"):
        scored = runner.invoke(
            cli, ["evaluate", str(out / "models" / name), str(EXAMPLE_TEST), *COLUMNS, "--json"]
        )
        assert scored.exit_code == 0, scored.output
        assert json.loads(scored.stdout)["macro_f1"] == results[name]["macro_f1"]
    # And the real-only model is what `localgen train --real` makes.
    alone = tmp_path / "alone"
    trained = runner.invoke(
        cli, ["train", "--real", str(EXAMPLE_SEED), *COLUMNS, "--out", str(alone), "-q"]
    )
    assert trained.exit_code == 0, trained.output
    scored = runner.invoke(cli, ["evaluate", str(alone), str(EXAMPLE_TEST), *COLUMNS, "--json"])
    assert json.loads(scored.stdout)["macro_f1"] == results["real"]["macro_f1"]

    difference = comparison["differences"]["combined_minus_real"]["macro_f1_difference"]
    expected = results["combined"]["macro_f1"]["value"] - results["real"]["macro_f1"]["value"]
    assert abs(difference - expected) < 2e-4  # the two scores are rounded to 4 digits

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classifier"]["results"]["real"]["macro_f1"] == results["real"]["macro_f1"]
    html = (out / "report.html").read_text()
    assert "Classifier on real test data" in html
    assert f"{results['combined']['macro_f1']['value']:.3f}" in html
    weight = results["combined"]["synthetic_weight"]["chosen"]
    assert f"each synthetic row weighs\n<b>{weight:g}</b>" in html


def test_run_rerun_resumes_generation_and_recomputes_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [
        "run",
        str(EXAMPLE_TASK),
        "--real",
        str(EXAMPLE_SEED),
        "--test",
        str(EXAMPLE_TEST),
        *COLUMNS,
        "--out",
        str(out),
        "-n",
        "2",
        "--engine",
        "fake",
        "--resamples",
        "0",
    ]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    rows_before = (out / "synthetic.parquet").read_bytes()
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0, second.output
    assert "8 of 8 rows already stored" in second.stderr
    assert (out / "synthetic.parquet").read_bytes() == rows_before
    comparison = json.loads((out / "comparison.json").read_text())
    assert "ci" not in comparison["results"]["real"]["macro_f1"]  # --resamples 0


def test_run_checks_the_test_data_before_generating(tmp_path: Path) -> None:
    bad_test = tmp_path / "test.csv"
    bad_test.write_text("message,team\nWhere is my parcel?,shipping\n")
    result = CliRunner().invoke(
        cli,
        [
            "run",
            str(EXAMPLE_TASK),
            "--real",
            str(EXAMPLE_SEED),
            "--test",
            str(bad_test),
            *COLUMNS,
            "--out",
            str(tmp_path / "run"),
            "--engine",
            "fake",
        ],
    )
    assert result.exit_code == 1
    assert "labels not in the task file: 'shipping'" in result.stderr
    assert not (tmp_path / "run").exists()


def test_run_trains_all_three_with_the_method_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", str(EXAMPLE_TASK), "--real", str(EXAMPLE_SEED), "--test", str(EXAMPLE_TEST)]
    setfit = ["--method", "setfit", "--pairs", "16", "--batch-size", "8"]
    result = CliRunner().invoke(
        cli, [*args, *COLUMNS, "--out", str(out), "-n", "2", "--engine", "fake", "-q", *setfit]
    )
    assert result.exit_code == 0, result.output
    assert "classifier: SetFit (encoder tuned on pairs) + linear head" in result.stdout
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["settings"]["method"] == "setfit" and comparison["settings"]["pairs"] == 16
    for name in ("real", "synthetic", "combined"):
        model = json.loads((out / "models" / name / "model.json").read_text())
        assert model["method"] == "setfit" and model["encoder"]["name"] == "encoder"
        # Scored with its own tuned encoder: `localgen evaluate` agrees with the comparison.
        scored = CliRunner().invoke(
            cli, ["evaluate", str(out / "models" / name), str(EXAMPLE_TEST), *COLUMNS, "--json"]
        )
        assert json.loads(scored.stdout)["macro_f1"] == comparison["results"][name]["macro_f1"]
    assert "tuned by SetFit on 16 pairs" in (out / "report.html").read_text()


def test_run_keep_grows_the_run_until_each_label_has_n_rows_and_trains_on_n(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    args = ["run", str(EXAMPLE_TASK), "--real", str(EXAMPLE_SEED), "--test", str(EXAMPLE_TEST)]
    args += [*COLUMNS, "--out", str(out), "-n", "4", "--engine", "fake", "--resamples", "0"]
    first = CliRunner().invoke(cli, [*args, "--keep", "6"])
    assert first.exit_code == 0, first.output
    assert "round 2: labels short of 6 rows: asking" in first.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    [round_two] = manifest["plan"]["more"]
    assert manifest["counts"]["stored"] == 16 + sum(round_two.values())
    comparison = json.loads((out / "comparison.json").read_text())
    keep = comparison["synthetic"]["keep"]
    assert keep["rounds"] == 2 and keep["short"] == 0
    planned = sum(entry["planned"] for entry in keep["per_label"].values())
    assert f"--keep 6: 2 round(s), {planned} rows planned; every label has them" in first.stdout
    assert all(entry["passed"] >= 6 for entry in keep["per_label"].values())
    trained = comparison["results"]["synthetic"]["training_rows"]["synthetic"]
    assert trained == dict.fromkeys(["account_access", "billing", "bug", "feature_request"], 6)
    assert comparison["synthetic"]["kept"] == 24
    curation = json.loads((out / "curation.json").read_text())
    surplus = sum(entry["passed"] - 6 for entry in keep["per_label"].values())
    assert curation["rules"]["surplus"]["dropped"] == surplus
    # The same command again finds the rounds done; a larger N adds a round to the same
    # run, and the rows already stored stay as they were.
    import polars as pl

    before = pl.read_parquet(out / "synthetic.parquet").select("request_key", "text", "seed")
    again = CliRunner().invoke(cli, [*args, "--keep", "6"])
    assert again.exit_code == 0 and "round" not in again.stderr.replace("rounds", "")
    more = CliRunner().invoke(cli, [*args, "--keep", "9", "--keep-budget", "2"])
    assert more.exit_code == 0, more.output
    assert "adding rows to" in more.stderr
    after = pl.read_parquet(out / "synthetic.parquet").select("request_key", "text", "seed")
    assert (
        before.join(after, on="request_key")
        .filter((pl.col("text") != pl.col("text_right")) | (pl.col("seed") != pl.col("seed_right")))
        .is_empty()
        and after.height > before.height
    )
    keep = json.loads((out / "comparison.json").read_text())["synthetic"]["keep"]
    assert keep["rounds"] == 3 and keep["budget_per_label"] == 18
    # A budget too small for N: the label trains on what passed, with a warning.
    small = CliRunner().invoke(cli, [*args, "--keep", "40", "--keep-budget", "1"])
    assert small.exit_code == 0, small.output
    assert "warning: label 'billing' has" in small.stderr and "of 40 rows" in small.stderr
    assert "short of 40: " in small.stdout and "billing" in small.stdout
    refused = CliRunner().invoke(cli, [*args[:-6], "--balance", "majority", "--keep", "4"])
    assert refused.exit_code == 2 and "either --keep or --balance" in refused.output


def test_run_labels_the_documents_and_trains_on_them_too(tmp_path: Path) -> None:
    out = tmp_path / "run"
    inbox = EXAMPLE_TASK.parent / "inbox.csv"
    runner = CliRunner()
    args = ["run", str(EXAMPLE_TASK), "--real", str(EXAMPLE_SEED), "--test", str(EXAMPLE_TEST)]
    args += [*COLUMNS, "--out", str(out), "-n", "2", "--engine", "fake", "--quiet"]
    result = runner.invoke(cli, [*args, "--documents", str(inbox)])
    assert result.exit_code == 0, result.output
    comparison = json.loads((out / "comparison.json").read_text())
    documents, results = comparison["documents"], comparison["results"]
    assert documents["labels"] == str(out / "documents") and documents["labelled"] == 48
    chosen = documents["chosen"]
    assert chosen == sum(documents["chosen_per_label"].values()) > 0
    assert results["documents"]["train_rows"] == 24 + chosen
    described = len(load_task(EXAMPLE_TASK).label_names)  # one row per label description
    assert results["all"]["train_rows"] == 24 + chosen + comparison["synthetic"]["kept"] + described
    assert results["documents"]["training_rows"]["documents"] == {
        k: v for k, v in sorted(documents["chosen_per_label"].items()) if v
    }
    assert results["documents"]["documents_weight"]["setting"] == "auto"
    for key in ("documents_minus_real", "all_minus_real"):
        assert key in comparison["differences"]
    assert "real + documents minus real only" in result.stdout
    html = (out / "report.html").read_text()
    assert "Labelled documents" in html and "Real + documents minus real only" in html
    # The labels are a label folder `train --documents` takes; a rerun labels nothing again.
    rerun = runner.invoke(cli, [*args, "--documents", str(inbox)])
    assert rerun.exit_code == 0, rerun.output
    again = json.loads((out / "comparison.json").read_text())
    assert again["results"]["documents"]["macro_f1"] == results["documents"]["macro_f1"]
    manifest = json.loads((out / "documents" / "manifest.json").read_text())
    assert manifest["counts"]["answered"] == 48 and manifest["status"] == "complete"


def test_run_warns_when_documents_are_in_the_test_data(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["run", str(EXAMPLE_TASK), "--real", str(EXAMPLE_SEED), "--test", str(EXAMPLE_TEST)]
    args += [*COLUMNS, "--out", str(tmp_path / "run"), "-n", "1", "--engine", "fake", "-q"]
    result = runner.invoke(cli, [*args, "--documents", str(EXAMPLE_TEST), "--strict"])
    assert result.exit_code == 1 and "are also in the training data" in result.output
    assert not (tmp_path / "run").exists()


def test_run_generates_from_the_documents_it_labels(tmp_path: Path) -> None:
    out = tmp_path / "run"
    inbox = EXAMPLE_TASK.parent / "inbox.csv"
    args = ["run", str(EXAMPLE_TASK), "--real", str(EXAMPLE_SEED), "--test", str(EXAMPLE_TEST)]
    args += [*COLUMNS, "--out", str(out), "-n", "2", "--engine", "fake", "--quiet"]
    args += ["--strategy", "from-documents", "--strategy", "few-shot"]
    without = CliRunner().invoke(cli, args)
    assert without.exit_code == 1 and "pass --documents FILE" in without.output
    result = CliRunner().invoke(cli, [*args, "--documents", str(inbox)])
    assert result.exit_code == 0, result.output
    rows = pl.read_parquet(out / "synthetic.parquet")
    shown = rows.filter(pl.col("strategy") == "from-documents")["positive_ids"].to_list()
    assert len(shown) == 4 and all(ids[0].startswith("doc-") for ids in shown)
    inbox_ids = {document_id(t.strip()) for t in pl.read_csv(inbox)["message"]}
    assert {ids[0] for ids in shown} <= inbox_ids  # the documents shown are the user's
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["documents"]["path"] == str(inbox)


def test_train_with_a_task_adds_one_row_per_label_description(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["train", "--real", str(EXAMPLE_SEED), *COLUMNS, "--task", str(EXAMPLE_TASK), "-q"]
    result = runner.invoke(cli, [*base, "--out", str(tmp_path / "m"), "--json"])
    assert result.exit_code == 0, result.output
    training = json.loads(result.stdout)["training"]
    labels = load_task(EXAMPLE_TASK).label_names
    assert training["rows"]["descriptions"] == {name: 1 for name in sorted(labels)}
    assert training["inputs"]["task"] == str(EXAMPLE_TASK)
    assert "label descriptions weigh 4" in result.stderr
    off = runner.invoke(
        cli, [*base, "--out", str(tmp_path / "off"), "--descriptions-weight", "0", "--json"]
    )
    assert off.exit_code == 0, off.output
    assert "descriptions" not in json.loads(off.stdout)["training"]["rows"]
    missing = runner.invoke(
        cli, [*base[:-3], "--task", str(tmp_path / "none.toml"), "-q", "--out", str(tmp_path / "x")]
    )
    assert missing.exit_code == 1 and "none.toml" in missing.output
    assert not (tmp_path / "x").exists()


def test_run_with_fit_weights_shows_each_rows_weight_in_the_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", str(EXAMPLE_TASK), "--real", str(EXAMPLE_SEED), "--test", str(EXAMPLE_TEST)]
    args += [*COLUMNS, "--out", str(out), "-n", "3", "--engine", "fake", "--quiet"]
    result = CliRunner().invoke(cli, [*args, "--synthetic-weight", "fit"])
    assert result.exit_code == 0, result.output
    weights = pl.read_parquet(out / "models" / "combined" / "row_weights.parquet")
    comparison = json.loads((out / "comparison.json").read_text())
    assert weights.height == comparison["synthetic"]["kept"] > 0
    mix = comparison["results"]["combined"]["synthetic_weight"]
    assert mix["setting"] == "fit" and len(mix["lowest"]) == min(5, weights.height)
    assert "by how well each fits its label" in result.stdout
    html = (out / "report.html").read_text()
    assert "The lowest-weighted rows" in html
    for name, entry in mix["per_label"].items():
        assert f"<td>{name}</td><td>{entry['rows']}</td><td>{entry['mean']:.3f}</td>" in html


def test_run_with_channel_weights_scores_the_rows_and_trains_at_their_posterior(
    tmp_path: Path,
) -> None:
    """`run --synthetic-weight channel` turns the fit margin on (the engine scores every
    row under each label's prompt) and trains each kept row at its fit_posterior."""
    out = tmp_path / "run"
    args = ["run", str(EXAMPLE_TASK), "--real", str(EXAMPLE_SEED), "--test", str(EXAMPLE_TEST)]
    args += [*COLUMNS, "--out", str(out), "-n", "3", "--engine", "fake", "--quiet"]
    result = CliRunner().invoke(cli, [*args, "--synthetic-weight", "channel"])
    assert result.exit_code == 0, result.output
    kept = pl.read_parquet(out / "curated.parquet")
    assert kept["fit_posterior"].null_count() == 0
    weights = pl.read_parquet(out / "models" / "combined" / "row_weights.parquet")
    assert weights["weight"].to_list() == pytest.approx(kept["fit_posterior"].to_list(), abs=1e-4)
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["results"]["combined"]["synthetic_weight"]["setting"] == "channel"
    assert "its fit_posterior" in (out / "report.html").read_text()
