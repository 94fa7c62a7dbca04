"""`localgen label`: every label's probability from a constrained answer, the calibration,
the choice, and the run folder (resume, safety, bad input), on the fake engine."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from localgen.cli import cli
from localgen.config import EngineSettings, LabelConfig, TrainConfig
from localgen.data import read_documents
from localgen.documents.asking import DocumentPrompt, label_probabilities
from localgen.documents.choose import UNCHECKED_PER_LABEL, calibrate, choose, summary
from localgen.documents.label import chosen_documents, label_documents
from localgen.engines.base import Completion, Feed
from localgen.engines.fake import FakeEngine
from localgen.errors import DataError, OutputError
from localgen.planning.requests import Request
from localgen.planning.task import load_task
from tests.helpers import EXAMPLE_SEED, EXAMPLE_TASK, EXAMPLE_TEST

OPEN = '{"label":"'


def test_each_label_gets_the_probability_of_the_token_that_leads_to_it() -> None:
    steps = [[(OPEN, 0.0)], [("ham", -0.1), ("spam", -2.4), (" ham", -5.0)], [('"}', 0.0)]]
    p = label_probabilities(steps, ["ham", "spam"])
    assert p is not None
    expected = math.exp(-0.1) / (math.exp(-0.1) + math.exp(-2.4))
    assert p["ham"] == pytest.approx(expected)  # " ham" leads to no label: not counted
    assert p["spam"] == pytest.approx(1 - expected)


def test_labels_sharing_a_first_token_are_told_apart_where_they_branch() -> None:
    labels = ["account_access", "account_admin", "bug"]
    steps = [
        [(OPEN, 0.0)],
        [("account", -0.2), ("bug", -1.8), ("acc", -3.0)],  # "acc": both account labels
        [("_access", -0.5), ("_admin", -1.0)],
        [('"}', 0.0)],
    ]
    p = label_probabilities(steps, labels)
    assert p is not None
    acc = math.exp(-3.0) / 2  # an alternative leading to two labels is shared
    raw = {
        "account_access": math.exp(-0.2 - 0.5) + acc,
        "account_admin": math.exp(-0.2 - 1.0) + acc,
        "bug": math.exp(-1.8),
    }
    total = sum(raw.values())
    for name in labels:
        assert p[name] == pytest.approx(raw[name] / total)


def test_a_token_across_the_opening_and_the_label_still_counts() -> None:
    steps = [[('{"label', 0.0)], [('":"ham', -0.3), ('":"spam', -1.3)], [('"}', 0.0)]]
    p = label_probabilities(steps, ["ham", "spam"])
    assert p is not None and p["ham"] > p["spam"]
    assert sum(p.values()) == pytest.approx(1.0)


def test_an_answer_that_names_no_label_has_no_probabilities() -> None:
    assert label_probabilities([[(OPEN, 0.0)], [("eggs", -0.1)]], ["ham", "spam"]) is None
    assert label_probabilities(None, ["ham", "spam"]) is None


def test_calibration_divides_by_the_models_mean_and_keeps_its_answer() -> None:
    # The model says "a" every time, but its "b" rises on two documents.
    a = [0.9] * 18 + [0.7, 0.7, None]
    frame = pl.DataFrame(
        {
            "answer": ["a"] * 21,
            "p_model_a": a,
            "p_model_b": [None if p is None else 1 - p for p in a],
        }
    )
    calibrated, prior = calibrate(frame, ["a", "b"])
    assert prior == {"a": pytest.approx(0.88), "b": pytest.approx(0.12)}
    # 0.7 / 0.88 < 0.3 / 0.12; no probabilities: the answer
    assert calibrated["label"].to_list() == ["a"] * 18 + ["b", "b", "a"]
    assert calibrated["answer"].to_list() == ["a"] * 21
    row = calibrated.row(18, named=True)
    assert row["p_model_a"] + row["p_model_b"] == pytest.approx(1.0)
    # Too few documents to estimate a prior: the model's answers stand.
    few, prior = calibrate(frame.tail(3), ["a", "b"])
    assert few["label"].to_list() == ["a", "a", "a"] and prior == {}


def test_calibration_is_used_only_where_the_classifier_agrees_with_it_more() -> None:
    from localgen.documents.choose import calibrated_where_it_agrees

    a = [0.9] * 18 + [0.7, 0.7]
    frame = pl.DataFrame({"answer": ["a"] * 20, "p_model_a": a, "p_model_b": [1 - p for p in a]})
    # Calibration turns the last two into "b"; the classifier says "b" there too.
    says_b = frame.with_columns(
        pl.Series("p_classifier_a", [0.8] * 18 + [0.2, 0.2]),
        pl.Series("p_classifier_b", [0.2] * 18 + [0.8, 0.8]),
    )
    used, info = calibrated_where_it_agrees(says_b, ["a", "b"])
    assert used["label"].to_list()[-2:] == ["b", "b"] and info["used"]
    assert info["agreement_with_classifier"] == {"answers": 0.9, "calibrated": 1.0}
    # The classifier says "a" everywhere: the model's own answers and probabilities stand.
    says_a = frame.with_columns(
        pl.lit(0.8).alias("p_classifier_a"), pl.lit(0.2).alias("p_classifier_b")
    )
    kept, info = calibrated_where_it_agrees(says_a, ["a", "b"])
    assert kept["label"].to_list() == ["a"] * 20 and not info["used"]
    assert kept["p_model_a"].to_list() == a


def test_the_choice_keeps_the_most_confident_agreed_documents_per_label() -> None:
    frame = pl.DataFrame(
        {
            "label": ["a", "a", "a", "b", "b", None],
            "p_model_a": [0.9, 0.8, 0.95, 0.2, 0.1, None],
            "p_model_b": [0.1, 0.2, 0.05, 0.8, 0.9, None],
            "p_classifier_a": [0.9, 0.7, 0.2, 0.3, 0.4, 0.5],
            "p_classifier_b": [0.1, 0.3, 0.8, 0.7, 0.6, 0.5],
        }
    )
    chosen = choose(frame, ["a", "b"], per_label=1)
    assert chosen["agree"].to_list() == [True, True, False, True, True, None]
    # b: sqrt(0.8 * 0.7) = 0.748 before sqrt(0.9 * 0.6) = 0.735
    assert chosen["rank"].to_list() == [0, 1, None, 0, 1, None]
    assert chosen["chosen"].to_list() == [True, False, False, True, False, False]
    assert chosen["confidence"][0] == pytest.approx(math.sqrt(0.9 * 0.9))


def test_without_a_cap_every_agreed_document_is_chosen_and_unchecked_labels_are_capped() -> None:
    rows = 70
    frame = pl.DataFrame(
        {
            "label": ["a"] * rows + ["b"],
            "p_model_a": [0.9] * rows + [0.3],
            "p_model_b": [0.1] * rows + [0.7],
            "p_classifier_a": [0.8] * (rows - 1) + [0.1, 0.2],
            "p_classifier_b": [0.2] * (rows - 1) + [0.9, 0.8],
        }
    )
    chosen = choose(frame, ["a", "b"], per_label=None)
    # Every document both agree on, beyond the old cap of 64; the one they disagree on out.
    assert chosen["chosen"].to_list() == [True] * (rows - 1) + [False, True]
    assert summary(chosen, ["a", "b"], None)["cap"] is None
    unchecked = choose(frame.drop("p_classifier_a", "p_classifier_b"), ["a", "b"], None)
    assert unchecked["chosen"].sum() == UNCHECKED_PER_LABEL + 1
    assert summary(unchecked, ["a", "b"], None)["cap"] == UNCHECKED_PER_LABEL


def _documents(tmp_path: Path, texts: list[str], name: str = "docs.csv") -> Path:
    path = tmp_path / name
    pl.DataFrame({"message": texts}).write_csv(path)
    return path


TICKETS = pl.read_csv(EXAMPLE_TEST)["message"].to_list()


def _config(tmp_path: Path, documents: Path, **kwargs: object) -> LabelConfig:
    values: dict[str, object] = {
        "documents": documents,
        "task_path": EXAMPLE_TASK,
        "out": tmp_path / "labels",
        "seed_data": EXAMPLE_SEED,
        "text_column": "message",
        "label_column": "team",
        "engine": EngineSettings(name="fake"),
        "quiet": True,
    }
    return LabelConfig(**(values | kwargs))  # type: ignore[arg-type]


def test_every_distinct_document_is_labelled_once_with_its_row_number(tmp_path: Path) -> None:
    texts = [TICKETS[0], "", TICKETS[1], TICKETS[0], TICKETS[2]]
    result = label_documents(_config(tmp_path, _documents(tmp_path, texts)))
    table = pl.read_parquet(result.out / "labeled.parquet")
    assert table["row"].to_list() == [0, 2, 4]  # the empty one and the repeat left out
    assert table["text"].to_list() == [TICKETS[0], TICKETS[1], TICKETS[2]]
    labels = load_task(EXAMPLE_TASK).label_names
    assert set(table["label"]) <= set(labels) and set(table["answer"]) <= set(labels)
    for row in table.iter_rows(named=True):
        assert sum(row[f"p_model_{n}"] for n in labels) == pytest.approx(1.0, abs=1e-4)
        assert sum(row[f"p_classifier_{n}"] for n in labels) == pytest.approx(1.0, abs=1e-4)
        assert row["agree"] == (row["label"] == row["classifier_label"])
        assert not row["chosen"] or row["agree"]
    manifest = json.loads((result.out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["documents"]["read"] == {"rows": 5, "empty": 1, "duplicates": 1}
    assert manifest["choice"]["chosen"] == int(table["chosen"].sum()) == result.chosen
    assert len(manifest["prompt"]["examples"]) == 4 * len(labels)


def test_the_shared_part_of_the_prompt_comes_first_and_is_the_same_for_every_document() -> None:
    from localgen.data import read_task_data

    task = load_task(EXAMPLE_TASK)
    seed = read_task_data(EXAMPLE_SEED, "message", "team", task.label_names)
    prompt = DocumentPrompt(task, seed, 2, 0, None, None)
    one, two = (prompt.ask(f"doc-{i:06d}", t, i).request for i, t in enumerate(TICKETS[:2]))
    shared = len(one.prompt) - len(TICKETS[0])
    assert one.prompt.endswith(TICKETS[0]) and two.prompt.endswith(TICKETS[1])
    assert one.prompt[: shared - 2] == two.prompt[: shared - 2]
    assert len(one.positive_ids) == 2 * len(task.label_names)
    assert one.top_logprobs > 0 and one.temperature == 0.0


def test_a_document_longer_than_the_context_is_cut_to_fit() -> None:
    task = load_task(EXAMPLE_TASK)

    def count(text: str) -> int:
        return len(text.split())

    prompt = DocumentPrompt(task, None, 0, 0, 400, count)
    long = " ".join(f"word{i}" for i in range(5_000))
    asked = prompt.ask("doc-000000", long, 0)
    assert asked.cut and count(asked.request.prompt) + asked.request.max_tokens <= 400
    assert not prompt.ask("doc-000001", TICKETS[0], 1).cut


class Dying(FakeEngine):
    """A fake engine that stops, as a killed process does, after `answers` completions."""

    def __init__(self, answers: int) -> None:
        super().__init__()
        self.answers = answers

    def generate(self, requests: Iterable[Request] | Feed) -> Iterator[Completion]:
        for n, completion in enumerate(super().generate(requests)):
            if n == self.answers:
                raise KeyboardInterrupt
            yield completion


def test_a_killed_run_resumes_and_asks_only_the_documents_not_answered(tmp_path: Path) -> None:
    docs = _documents(tmp_path, TICKETS)
    clean = label_documents(_config(tmp_path, docs, out=tmp_path / "clean"))
    config = _config(tmp_path, docs, shard_rows=5)
    with pytest.raises(KeyboardInterrupt):
        label_documents(config, engine=Dying(12))
    manifest = json.loads((config.out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["counts"]["answered"] == 12
    engine = FakeEngine()
    result = label_documents(config, engine=engine)
    asked = [key for call in engine.calls for key in call]
    assert len(asked) == len(TICKETS) - 12 and result.resumed == 12
    sessions = result.manifest["timings"]["sessions"]  # both processes' share is kept
    assert [s["documents"] for s in sessions] == [12, len(TICKETS) - 12]
    columns = ["row", "label", "confidence", "chosen"]
    assert (
        pl.read_parquet(result.out / "labeled.parquet")
        .select(columns)
        .equals(pl.read_parquet(clean.out / "labeled.parquet").select(columns))
    )


def test_a_folder_that_is_not_a_label_run_is_never_emptied(tmp_path: Path) -> None:
    out = tmp_path / "labels"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    docs = _documents(tmp_path, TICKETS[:3])
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="not a localgen label run"):
            label_documents(_config(tmp_path, docs, overwrite=overwrite))
    assert (out / "notes.txt").read_text() == "mine"


def test_labels_of_other_documents_are_kept_unless_overwritten(tmp_path: Path) -> None:
    label_documents(_config(tmp_path, _documents(tmp_path, TICKETS[:3])))
    other = _documents(tmp_path, TICKETS[3:6], "other.csv")
    with pytest.raises(OutputError, match="other documents"):
        label_documents(_config(tmp_path, other))
    result = label_documents(_config(tmp_path, other, overwrite=True))
    assert pl.read_parquet(result.out / "labeled.parquet")["text"].to_list() == TICKETS[3:6]


def test_limit_sample_and_a_folder_of_text_files(tmp_path: Path) -> None:
    docs = _documents(tmp_path, TICKETS)
    limited = label_documents(_config(tmp_path, docs, limit=5, out=tmp_path / "a"))
    assert limited.documents == 5
    sampled = label_documents(_config(tmp_path, docs, sample=7, out=tmp_path / "b"))
    rows = pl.read_parquet(sampled.out / "labeled.parquet")["row"].to_list()
    assert len(rows) == 7 and rows == sorted(rows) and rows != list(range(7))
    folder = tmp_path / "folder"
    folder.mkdir()
    for i, text in enumerate(TICKETS[:3]):
        (folder / f"{i}.txt").write_text(text)
    frame, read = read_documents(folder)
    assert frame["text"].to_list() == TICKETS[:3] and frame["source"][0] == "0.txt"


def _file(folder: Path, name: str, text: str) -> Path:
    (folder / name).write_text(text)
    return folder / name


def _empty_folder(folder: Path) -> Path:
    (folder / "x").mkdir()
    return folder / "x"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.csv", "documents not found"),
        (lambda d: _file(d, "e.csv", ""), "the file is empty"),
        (lambda d: _file(d, "t.csv", "message\n\n"), "no documents"),
        (_empty_folder, "must hold .txt files"),
        (lambda d: _documents(d, ["x" * 200_001]), "at most 200,000"),
        (lambda d: _file(d, "c.csv", "body\nhi\n"), "no column 'message'"),
    ],
)
def test_bad_documents_are_one_line_and_nothing_is_written(tmp_path, make, message) -> None:  # type: ignore[no-untyped-def]
    documents = make(tmp_path)
    out = tmp_path / "labels"
    result = CliRunner().invoke(
        cli,
        ["label", str(documents), "--task", str(EXAMPLE_TASK), "--out", str(out)]
        + ["--text-column", "message", "--engine", "fake"],
    )
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_a_document_of_200000_characters_is_labelled_cut(tmp_path: Path) -> None:
    frame, _ = read_documents(_documents(tmp_path, ["word " * 40_000]), "message")
    assert frame["text"].str.len_chars()[0] == 199_999  # stripped


def test_train_takes_the_chosen_documents_at_their_own_weight(tmp_path: Path) -> None:
    from localgen.classify.train import train

    result = label_documents(_config(tmp_path, _documents(tmp_path, TICKETS)))
    chosen = chosen_documents(result.out)
    assert chosen.height == result.chosen > 0
    real = tmp_path / "real.csv"
    pl.read_csv(EXAMPLE_SEED).rename({"message": "text", "team": "label"}).write_csv(real)
    model = train(
        TrainConfig(tmp_path / "model", real=real, documents=result.out),
    )
    training = model.info["training"]
    assert training["rows"]["documents"] == dict(sorted(chosen.group_by("label").len().iter_rows()))
    assert training["documents_weight"]["setting"] == "auto"
    assert training["synthetic_weight"] is None
    # A labeled file without a `chosen` column: every row.
    plain = tmp_path / "plain.csv"
    pl.DataFrame({"text": TICKETS[:4], "label": ["bug"] * 4}).write_csv(plain)
    assert chosen_documents(plain).height == 4
    with pytest.raises(DataError, match="no labeled.parquet"):
        chosen_documents(tmp_path)


def test_an_answer_that_is_no_label_leaves_the_document_unlabelled_not_lost(
    tmp_path: Path,
) -> None:
    engine = FakeEngine()
    engine.enqueue("doc-000001", '{"label":"bil')  # cut off, as at max_tokens
    result = label_documents(_config(tmp_path, _documents(tmp_path, TICKETS[:4])), engine=engine)
    table = pl.read_parquet(result.out / "labeled.parquet")
    row = table.filter(pl.col("row") == 1).row(0, named=True)
    assert row["label"] is None and row["answer"] is None and not row["chosen"]
    assert row["p_model_billing"] is None
    assert result.answered == 3 and result.manifest["choice"]["unanswered"] == 1


def test_a_label_without_probabilities_ranks_after_the_measured_ones() -> None:
    frame = pl.DataFrame(
        {
            "label": ["a", "a"],
            "p_model_a": [None, 0.6],
            "p_model_b": [None, 0.4],
            "p_classifier_a": [0.9, 0.8],
            "p_classifier_b": [0.1, 0.2],
        }
    )
    assert choose(frame, ["a", "b"], per_label=1)["chosen"].to_list() == [False, True]
    none = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("p_model_a"))
    none = none.with_columns(pl.lit(None, dtype=pl.Float64).alias("p_model_b"))
    # An engine that gives no probabilities at all: the classifier ranks alone.
    assert choose(none, ["a", "b"], per_label=1)["chosen"].to_list() == [True, False]


def test_seed_data_of_one_label_fails_before_anything_is_asked(tmp_path: Path) -> None:
    one = tmp_path / "one.csv"
    pl.DataFrame({"message": TICKETS[:3], "team": ["bug"] * 3}).write_csv(one)
    engine = FakeEngine()
    with pytest.raises(DataError, match="at least two labels"):
        label_documents(
            _config(tmp_path, _documents(tmp_path, TICKETS), seed_data=one), engine=engine
        )
    assert engine.calls == []


def test_run_tells_a_label_folder_from_a_folder_of_documents(tmp_path: Path) -> None:
    from localgen.documents.label import is_label_folder

    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "a.txt").write_text(TICKETS[0])
    assert not is_label_folder(folder)
    result = label_documents(_config(tmp_path, folder))
    assert is_label_folder(result.out) and result.documents == 1


def test_generate_shows_the_documents_behind_a_label_folder(tmp_path: Path) -> None:
    documents = _documents(tmp_path, TICKETS[:3])
    labels = label_documents(_config(tmp_path, documents)).out
    args = ["plan", str(EXAMPLE_TASK), "--seed-data", str(EXAMPLE_SEED), "-n", "2"]
    args += ["--text-column", "message", "--label-column", "team", "--json"]
    args += ["--strategy", "from-documents", "--documents"]
    by_folder = CliRunner().invoke(cli, [*args, str(labels)])
    by_file = CliRunner().invoke(cli, [*args, str(documents)])
    assert by_folder.exit_code == 0, by_folder.output
    assert json.loads(by_folder.output) == json.loads(by_file.output)
    assert any(TICKETS[0][:40] in p["prompt"] for p in json.loads(by_file.output)["prompts"])
    documents.unlink()  # the label folder names them; gone, that is one clear line
    gone = CliRunner().invoke(cli, [*args, str(labels)])
    assert gone.exit_code == 1 and "the documents it labelled" in gone.output
    assert "Traceback" not in gone.output
