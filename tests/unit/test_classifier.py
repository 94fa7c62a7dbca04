"""The classifier: scores against hand-computed values, learning a separable task with the
real encoder, model folders that round-trip, and clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from localgen.classify.classifier import TextClassifier
from localgen.classify.evaluation import paired_difference, score
from localgen.classify.train import evaluate, predict, train
from localgen.cli import cli
from localgen.config import TrainConfig, TrainSettings
from localgen.errors import DataError, ModelError
from localgen.vectors.encoder import default_encoder_path
from localgen.vectors.linear import LinearHead, fit_linear
from tests.helpers import make_run

WEATHER = [
    "Heavy rain and strong winds are expected across the north tonight",
    "Tomorrow will be sunny with temperatures reaching thirty degrees",
    "Snow showers will spread from the west during the morning",
    "A thick fog covers the valley and should lift by noon",
    "The forecast warns of thunderstorms and hail this afternoon",
    "Expect a cold, frosty night with clear skies and light winds",
]
FOOTBALL = [
    "The striker scored twice in the second half to win the match",
    "The goalkeeper saved a penalty in the last minute of the game",
    "The club signed a new midfielder before the transfer deadline",
    "The referee showed a red card and the team played with ten men",
    "Their coach was sacked after five league defeats in a row",
    "The cup final went to extra time and was decided on penalties",
]
WEATHER_TEST = ["Drizzle and grey clouds all day, with a chance of sleet later"]
FOOTBALL_TEST = ["The defender headed the ball into the net from a corner kick"]


def _csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    pl.DataFrame({"text": [t for t, _ in rows], "label": [lab for _, lab in rows]}).write_csv(path)
    return path


@pytest.fixture
def toy(tmp_path: Path) -> tuple[Path, Path]:
    train_rows = [(t, "weather") for t in WEATHER] + [(t, "football") for t in FOOTBALL]
    test_rows = [(t, "weather") for t in WEATHER_TEST] + [(t, "football") for t in FOOTBALL_TEST]
    return _csv(tmp_path / "train.csv", train_rows), _csv(tmp_path / "test.csv", test_rows)


def test_scores_match_hand_computed_values() -> None:
    # Confusion (rows true, columns predicted) over a, b, c:
    #   a: 2 1 0      precision a 2/3, b 1/2, c 2/2; recall a 2/3, b 1/2, c 2/2
    #   b: 1 1 0      F1 a 2/3, b 1/2, c 1; macro (2/3 + 1/2 + 1) / 3 = 13/18
    #   c: 0 0 2      accuracy 5/7
    y_true = ["a", "a", "a", "b", "b", "c", "c"]
    y_pred = ["a", "a", "b", "a", "b", "c", "c"]
    result = score(y_true, y_pred, resamples=0)
    assert result["confusion"]["matrix"] == [[2, 1, 0], [1, 1, 0], [0, 0, 2]]
    assert result["accuracy"]["value"] == round(5 / 7, 4)
    assert result["macro_f1"]["value"] == round(13 / 18, 4)
    per = result["per_label"]
    assert per["a"]["precision"]["value"] == round(2 / 3, 4)
    assert per["b"]["recall"]["value"] == 0.5
    assert per["c"]["f1"]["value"] == 1.0
    assert [per[n]["support"] for n in "abc"] == [3, 2, 2]
    assert "ci" not in result["macro_f1"]


def test_a_label_only_predicted_counts_in_macro_f1_with_zero() -> None:
    # As scikit-learn: labels of y_true and y_pred; "x" has no support, precision 0.
    result = score(["a", "a", "b", "b"], ["a", "x", "b", "b"], resamples=0)
    assert result["labels"] == ["a", "b", "x"]
    f1_a, f1_b = 2 * 1 * 0.5 / 1.5, 1.0
    assert result["macro_f1"]["value"] == round((f1_a + f1_b + 0.0) / 3, 4)


def test_bootstrap_interval_brackets_the_score_and_narrows_with_more_rows() -> None:
    rng = np.random.default_rng(1)
    truth = rng.choice(["a", "b"], size=400).tolist()
    guess = [t if rng.random() < 0.8 else ("b" if t == "a" else "a") for t in truth]
    small = score(truth[:40], guess[:40], resamples=500)
    large = score(truth, guess, resamples=500)
    for result in (small, large):
        low, high = result["accuracy"]["ci"]
        assert low <= result["accuracy"]["value"] <= high
    width = lambda r: r["macro_f1"]["ci"][1] - r["macro_f1"]["ci"][0]  # noqa: E731
    assert width(large) < width(small) / 2  # about 1/sqrt(10) as wide
    assert score(truth, guess, resamples=500) == large  # fixed seed: same interval


def test_paired_difference_is_zero_for_equal_predictions_and_signed() -> None:
    truth = ["a", "b"] * 50
    same = paired_difference(truth, truth, truth, resamples=200)
    assert same["macro_f1_difference"] == 0.0 and same["ci"] == [0.0, 0.0]
    worse = ["a"] * 100  # predicts one label: macro-F1 1/3
    better = paired_difference(truth, worse, truth, resamples=200)
    assert better["macro_f1_difference"] == round(1 - (2 / 3) / 2, 4)
    assert better["ci"][0] > 0 and better["b_better_share"] == 1.0


def test_the_head_learns_a_separable_task_on_the_real_encoder(toy: tuple[Path, Path]) -> None:
    train_file, test_file = toy
    model = train(TrainConfig(train_file.parent / "model", real=train_file))
    assert model.predict(WEATHER_TEST + FOOTBALL_TEST) == ["weather", "football"]
    assert model.predict(WEATHER + FOOTBALL) == ["weather"] * 6 + ["football"] * 6
    result = evaluate(train_file.parent / "model", test_file, resamples=0)
    assert result["accuracy"]["value"] == 1.0


def test_model_folder_round_trips(toy: tuple[Path, Path]) -> None:
    train_file, _ = toy
    folder = train_file.parent / "model"
    model = train(TrainConfig(folder, real=train_file, settings=TrainSettings(c=4.0)))
    meta = json.loads((folder / "model.json").read_text())
    assert meta["format_version"] == 2 and meta["encoder"]["name"] == "builtin"
    assert meta["method"] == "frozen"
    assert meta["config"]["c"] == 4.0 and meta["training"]["rows"]["real"] == {
        "football": 6,
        "weather": 6,
    }
    assert json.loads((folder / "labels.json").read_text()) == ["football", "weather"]
    loaded = TextClassifier.load(folder)
    assert loaded.labels == model.labels
    np.testing.assert_array_equal(loaded.head.weight, model.head.weight)
    texts = WEATHER_TEST + FOOTBALL_TEST
    np.testing.assert_allclose(loaded.proba(texts), model.proba(texts), rtol=1e-6)
    rows = predict(folder, train_file)
    assert rows["label"].to_list() == ["weather"] * 6 + ["football"] * 6
    probs = rows.select("p_football", "p_weather").to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-3)


def test_class_weights_stop_the_majority_label_winning_borderline_rows() -> None:
    rng = np.random.default_rng(0)
    common = rng.normal([1.0, 0.0], 0.6, size=(90, 2))
    rare = rng.normal([-1.0, 0.0], 0.6, size=(10, 2))
    x = np.vstack([common, rare])
    labels = ["common"] * 90 + ["rare"] * 10
    middle = np.array([[-0.35, 0.0]])  # boundaries: -0.50 unweighted, -0.24 balanced
    assert fit_linear(x, labels, balanced=False, c=10).predict(middle) == ["common"]
    assert fit_linear(x, labels, balanced=True, c=10).predict(middle) == ["rare"]


def test_fine_tuning_changes_the_encoder_and_keeps_the_task(toy: tuple[Path, Path]) -> None:
    train_file, _ = toy
    folder = train_file.parent / "tuned"
    settings = TrainSettings(method="fine-tune", epochs=2, learning_rate=1e-4, batch_size=4)
    model = train(TrainConfig(folder, real=train_file, settings=settings))
    meta = json.loads((folder / "model.json").read_text())
    assert meta["encoder"]["name"] == "encoder" and (folder / "encoder" / "config.json").is_file()
    frozen = train(TrainConfig(train_file.parent / "frozen", real=train_file))
    frozen_meta = json.loads((train_file.parent / "frozen" / "model.json").read_text())
    assert meta["encoder"]["fingerprint"] != frozen_meta["encoder"]["fingerprint"]
    tuned_vectors = model.encoder.encode(WEATHER_TEST)
    assert not np.allclose(tuned_vectors, frozen.encoder.encode(WEATHER_TEST), atol=1e-4)
    assert model.predict(WEATHER + FOOTBALL) == ["weather"] * 6 + ["football"] * 6


def test_loading_refuses_a_changed_encoder(toy: tuple[Path, Path], tmp_path: Path) -> None:
    train_file, _ = toy
    copy = tmp_path / "my-encoder"
    shutil.copytree(default_encoder_path(), copy)
    train(
        TrainConfig(tmp_path / "model", real=train_file, settings=TrainSettings(encoder=str(copy)))
    )
    assert TextClassifier.load(tmp_path / "model").encoder_path == copy
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps(config | {"note": "edited"}))
    with pytest.raises(ModelError, match="not the one the model was trained with"):
        TextClassifier.load(tmp_path / "model")


def test_a_failed_save_keeps_the_previous_model(
    toy: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    train_file, _ = toy
    folder = train_file.parent / "model"
    first = train(TrainConfig(folder, real=train_file))
    before = sorted(p.name for p in folder.parent.iterdir())

    def broken(*_args: object, **_kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.numpy.save", broken)
    with pytest.raises(OSError, match="disk full"):
        train(TrainConfig(folder, real=train_file, settings=TrainSettings(c=0.1)))
    assert sorted(p.name for p in folder.parent.iterdir()) == before  # no staging left
    np.testing.assert_array_equal(TextClassifier.load(folder).head.weight, first.head.weight)


def test_training_reads_a_run_folder_curated_rows_first(tmp_path: Path) -> None:
    rows = [{"text": t, "label": "weather"} for t in WEATHER] + [
        {"text": t, "label": "football"} for t in FOOTBALL
    ]
    run = make_run(tmp_path, rows)
    model = train(TrainConfig(tmp_path / "m", synthetic=run))
    assert model.info["training"]["rows"] == {"synthetic": {"football": 6, "weather": 6}}
    kept = pl.read_parquet(run / "synthetic.parquet").head(9)  # 6 weather, 3 football
    kept.write_parquet(run / "curated.parquet")
    model = train(TrainConfig(tmp_path / "m", synthetic=run))
    assert model.info["training"]["rows"] == {"synthetic": {"football": 3, "weather": 6}}
    raw = train(TrainConfig(tmp_path / "m", synthetic=run, rows="raw"))
    assert raw.info["training"]["rows"]["synthetic"]["football"] == 6


def test_clear_errors(toy: tuple[Path, Path], tmp_path: Path) -> None:
    train_file, test_file = toy
    with pytest.raises(DataError, match="nothing to train on"):
        train(TrainConfig(tmp_path / "m"))
    one_label = _csv(tmp_path / "one.csv", [("a text", "x"), ("another", "x")])
    with pytest.raises(DataError, match="at least two labels"):
        train(TrainConfig(tmp_path / "m", real=one_label))
    assert not (tmp_path / "m").exists()
    train(TrainConfig(tmp_path / "m", real=train_file))
    other = _csv(tmp_path / "other.csv", [("The match ended in a draw", "sport")])
    with pytest.raises(DataError, match="labels not in the model's labels: 'sport'"):
        evaluate(tmp_path / "m", other)
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    with pytest.raises(DataError, match="no rows with both a text and a label"):
        evaluate(tmp_path / "m", empty)
    with pytest.raises(ModelError, match="not found"):
        evaluate(tmp_path / "nothing", test_file)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(ModelError, match="holds no localgen model"):
        train(TrainConfig(tmp_path / "junk", real=train_file))
    assert (tmp_path / "junk" / "notes.txt").read_text() == "mine"


def test_cli_train_evaluate_predict(toy: tuple[Path, Path], tmp_path: Path) -> None:
    train_file, test_file = toy
    runner = CliRunner()
    result = runner.invoke(cli, ["train", "--real", str(train_file), "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "trained on 12 real rows, 2 labels" in result.stderr
    result = runner.invoke(cli, ["evaluate", str(tmp_path / "m"), str(test_file), "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["macro_f1"]["value"] == 1.0 and scores["rows"] == 2
    text_file = tmp_path / "inbox.txt"
    text_file.write_text("\n".join(WEATHER_TEST + FOOTBALL_TEST) + "\n\n")
    result = runner.invoke(cli, ["predict", str(tmp_path / "m"), str(text_file), "-f", "jsonl"])
    assert result.exit_code == 2  # no such short option: the usage error, not a crash
    result = runner.invoke(
        cli, ["predict", str(tmp_path / "m"), str(text_file), "--format", "jsonl"]
    )
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["label"] for row in lines] == ["weather", "football"]
    assert all(abs(row["p_weather"] + row["p_football"] - 1) < 1e-3 for row in lines)
    table = runner.invoke(cli, ["predict", str(tmp_path / "m"), str(text_file)])
    assert table.stdout.splitlines()[1].startswith("weather")


def test_a_head_needs_matching_labels() -> None:
    head = LinearHead(("a", "b"), np.eye(2), np.zeros(2))
    assert head.predict(np.array([[0.0, 3.0]])) == ["b"]
    with pytest.raises(DataError, match="not among the classifier's labels: c"):
        fit_linear(np.eye(3), ["a", "b", "c"], ["a", "b"])
