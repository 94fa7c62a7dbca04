"""SetFit: the pairs it draws (by the rows' weights), and a model trained with the real
encoder that saves, loads, predicts and reproduces; format-1 model folders still load."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from localgen.classify.classifier import TextClassifier
from localgen.classify.setfit import encode, sample_pairs, sentence_model
from localgen.classify.train import train
from localgen.cli import cli
from localgen.config import TrainConfig, TrainSettings
from localgen.errors import UsageError
from localgen.vectors.linear import row_weights
from tests.unit.test_classifier import FOOTBALL, FOOTBALL_TEST, WEATHER, WEATHER_TEST, toy

__all__ = ["toy"]  # the fixture, shared with test_classifier


def test_pairs_alternate_same_and_different_labels() -> None:
    labels = ["a"] * 5 + ["b"] * 3 + ["c"] * 2
    pairs = sample_pairs(labels, np.ones(10), 200, seed=1)
    assert len(pairs) == 200
    for k, (i, j, target) in enumerate(pairs):
        same = labels[i] == labels[j]
        assert target == (1.0 if k % 2 == 0 else 0.0) and same == (target == 1.0)
        assert not (same and i == j)  # a label with several rows never pairs a row with itself
    assert sample_pairs(labels, np.ones(10), 200, seed=1) == pairs
    assert sample_pairs(labels, np.ones(10), 200, seed=2) != pairs


def test_pairs_follow_the_row_weights() -> None:
    # Class balance: 8 rows of "a", 2 of "b": each label still anchors half of the pairs.
    labels = ["a"] * 8 + ["b"] * 2
    y = np.array([0] * 8 + [1] * 2)
    pairs = sample_pairs(labels, row_weights(y, 2, True, None), 4000, seed=0)
    anchors = Counter(labels[i] for i, _, _ in pairs)
    assert abs(anchors["a"] - anchors["b"]) < 250  # 2000 each; sd of the difference about 63
    # A synthetic weight of 0: rows 8 and 9 are never drawn, as anchor or partner.
    factors = np.array([1.0] * 4 + [0.0] * 4 + [1.0] * 2)
    pairs = sample_pairs(labels, row_weights(y, 2, True, factors), 1000, seed=0)
    drawn = {i for i, _, _ in pairs} | {j for _, j, _ in pairs}
    assert drawn == {0, 1, 2, 3, 8, 9}


def test_pairs_with_one_row_or_one_label() -> None:
    pairs = sample_pairs(["a", "b", "b"], np.ones(3), 10, seed=0)
    assert all(j == 0 for i, j, t in pairs if t == 1.0 and i == 0)  # "a" alone: with itself
    only = sample_pairs(["a", "a", "a"], np.ones(3), 6, seed=0)
    assert all(t == 1.0 for _, _, t in only)  # no pair of two labels exists
    assert sample_pairs(["a", "b"], np.zeros(2), 6, seed=0) == []


def test_setfit_trains_a_model_that_evaluate_and_predict_use(toy: tuple[Path, Path]) -> None:
    train_file, _ = toy
    settings = TrainSettings(method="setfit", pairs=48, batch_size=8, learning_rate=1e-4)
    folder = train_file.parent / "setfit"
    model = train(TrainConfig(folder, real=train_file, settings=settings))
    meta = json.loads((folder / "model.json").read_text())
    assert meta["format_version"] == 2 and meta["method"] == "setfit"
    assert meta["training"]["pairs"] == 48 and meta["config"]["method"] == "setfit"
    assert meta["encoder"]["name"] == "encoder" and (folder / "encoder" / "config.json").is_file()
    frozen = train(TrainConfig(train_file.parent / "frozen", real=train_file))
    assert frozen.method == "frozen" and TextClassifier.load(folder).method == "setfit"
    frozen_meta = json.loads((train_file.parent / "frozen" / "model.json").read_text())
    assert meta["encoder"]["fingerprint"] != frozen_meta["encoder"]["fingerprint"]
    tuned = model.encoder.encode(WEATHER_TEST + FOOTBALL_TEST)
    base = frozen.encoder.encode(WEATHER_TEST + FOOTBALL_TEST)
    assert not np.allclose(tuned, base, atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(tuned, axis=1), 1.0, atol=1e-5)
    assert model.predict(WEATHER + FOOTBALL) == ["weather"] * 6 + ["football"] * 6
    assert model.predict(WEATHER_TEST + FOOTBALL_TEST) == ["weather", "football"]

    # Pairs pull a label's rows together: the two labels' centroids move apart.
    def gap(vectors: np.ndarray) -> float:
        return float(np.linalg.norm(vectors[:6].mean(0) - vectors[6:].mean(0)))

    texts = WEATHER + FOOTBALL
    assert gap(model.encoder.encode(texts)) > gap(frozen.encoder.encode(texts)) + 0.05
    # The head was fitted on the vectors the trainer's network gives; the saved folder, read
    # back by the encoder every stage uses, gives the same ones.
    reread = sentence_model(folder / "encoder", "cpu")
    np.testing.assert_allclose(encode(reread, texts), model.encoder.encode(texts), atol=1e-5)
    # The same seed, the same model.
    again = train(TrainConfig(train_file.parent / "again", real=train_file, settings=settings))
    np.testing.assert_allclose(again.head.weight, model.head.weight, atol=1e-5)


def test_a_format_1_model_folder_still_loads(toy: tuple[Path, Path]) -> None:
    train_file, _ = toy
    folder = train_file.parent / "old"
    train(TrainConfig(folder, real=train_file))
    meta = json.loads((folder / "model.json").read_text())
    meta["format_version"] = 1
    del meta["method"]
    (folder / "model.json").write_text(json.dumps(meta))
    old = TextClassifier.load(folder)
    assert old.method == "frozen" and old.predict(WEATHER_TEST) == ["weather"]


def test_methods_on_the_command_line(toy: tuple[Path, Path]) -> None:
    train_file, _ = toy
    runner = CliRunner()
    help_text = runner.invoke(cli, ["train", "--help"]).output
    assert "--method [frozen|fine-tune|setfit]" in help_text and "--pairs" in help_text
    out = str(train_file.parent / "m")
    both = runner.invoke(
        cli, ["train", "--real", str(train_file), "--out", out, "--fine-tune", "--method", "setfit"]
    )
    assert both.exit_code == 2 and "--fine-tune means --method fine-tune" in both.output
    unknown = runner.invoke(
        cli, ["train", "--real", str(train_file), "--out", out, "--method", "x"]
    )
    assert unknown.exit_code == 2 and "Traceback" not in unknown.output
    assert not Path(out).exists()
    with pytest.raises(UsageError, match="unknown training method"):
        TrainSettings(method="svm")


def test_pairs_come_from_the_real_rows_when_there_are_any(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Synthetic rows join the head at their weight, never the pairs, unless there are no
    real rows (run's synthetic-only classifier)."""
    import localgen.classify.setfit as setfit_module
    from localgen.classify.train import TrainingSet, fit

    seen: list[np.ndarray] = []

    def capture(_path: object, _texts: object, _labels: object, weights: np.ndarray, *_: object):  # type: ignore[no-untyped-def]
        seen.append(weights)
        raise RuntimeError("captured")

    monkeypatch.setattr(setfit_module, "tune_encoder", capture)
    labels = ["weather", "football"] * 4
    sources = ["real"] * 4 + ["synthetic"] * 4
    data = TrainingSet([f"text {i}" for i in range(8)], labels, np.eye(8, 4), sources)
    settings = TrainSettings(method="setfit", synthetic_weight=1.0)
    for part in (data, data.subset("synthetic")):
        with pytest.raises(RuntimeError, match="captured"):
            fit(part, settings, tmp_path / "m")
    mixed, synthetic_only = seen
    assert (mixed[:4] > 0).all() and (mixed[4:] == 0).all()
    assert (synthetic_only > 0).all()
