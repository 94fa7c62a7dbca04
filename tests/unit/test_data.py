from pathlib import Path

import polars as pl
import pytest

from localgen.data import (
    check_labels,
    content_id,
    data_warnings,
    label_conflicts,
    read_labeled,
    shared_texts,
)
from localgen.errors import DataError


def test_reads_csv_with_mapped_columns(seed_csv: Path) -> None:
    data = read_labeled(seed_csv, text_column="body", label_column="cls")
    assert data.frame.columns == ["id", "text", "label"]
    assert data.frame.height == 5
    assert sorted(data.by_label()) == ["billing", "bug"]
    first = data.frame.row(0, named=True)
    assert first["id"] == content_id(first["text"], "billing", "real-")


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_reads_jsonl_and_parquet(tmp_path: Path, suffix: str) -> None:
    frame = pl.DataFrame({"text": ["a b c", "  ", "d e f"], "label": ["x", "x", None]})
    path = tmp_path / f"d{suffix}"
    frame.write_ndjson(path) if suffix == ".jsonl" else frame.write_parquet(path)
    data = read_labeled(path)
    assert data.frame["text"].to_list() == ["a b c"]
    assert data.dropped_empty == 2


def test_labels_stay_strings(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\nhello there,01\n")
    assert read_labeled(path).frame["label"].to_list() == ["01"]


def test_ids_are_stable_and_distinct() -> None:
    # SHA-256 of "x\x1fa" (label, unit separator, text): pinned, so a change of the id
    # scheme, which would orphan every stored row id, fails here.
    assert content_id("a", "x") == "04526616e11c2488"
    assert content_id("a", "x", "syn-") == "syn-04526616e11c2488"
    assert content_id("a", "x") != content_id("a", "y")
    assert len(content_id("a", "x")) == 16


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "data file not found"),
        ("empty.csv", b"", "the file is empty"),
        ("d.txt", b"text,label\n", "unknown file type"),
        ("d.csv", b"body,label\nhello,x\n", "no column 'text'"),
        ("d.csv", b"text,label\n,x\n", "no rows with both a text and a label"),
        ("d.csv", b'text,label\n"a",x,extra,more\nb\n', "cannot read as csv"),
        ("d.csv", b"text,label\n\xff\xfe\xfa,x\n", "cannot read as csv"),
        ("d.parquet", b"not parquet at all", "cannot read as parquet"),
        ("d.jsonl", b"{not json\n", "cannot read as jsonl"),
    ],
)
def test_bad_files_fail_clearly(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as err:
        read_labeled(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_labels_are_named(seed_csv: Path) -> None:
    data = read_labeled(seed_csv, "body", "cls")
    check_labels(data, ["billing", "bug", "other"])  # a superset is fine
    with pytest.raises(DataError, match="labels not in the task file: 'bug'"):
        check_labels(data, ["billing"])


def _labeled(tmp_path: Path, name: str, rows: list[tuple[str, str]]) -> Path:
    path = tmp_path / name
    pl.DataFrame(rows, schema=["text", "label"], orient="row").write_csv(path)
    return path


def test_a_text_with_two_labels_is_found_in_curations_normal_form(tmp_path: Path) -> None:
    path = _labeled(
        tmp_path,
        "real.csv",
        [
            ("Reset my password, please!", "access"),
            ("reset my password please", "billing"),  # the same text after normalisation
            ("The invoice is wrong", "billing"),
            ("The invoice is wrong", "billing"),  # a duplicate, not a conflict
        ],
    )
    warning = label_conflicts(read_labeled(path))
    assert warning == (
        f"{path}: 1 text with two or more labels, e.g. 'Reset my password, please!' "
        "(access, billing)"
    )
    assert label_conflicts(read_labeled(_labeled(tmp_path, "ok.csv", [("a b", "x")]))) is None
    said: list[str] = []
    data_warnings([warning, None], strict=False, say=said.append)
    assert said == [f"warning: {warning}; --strict makes this an error"]
    with pytest.raises(DataError, match="1 text with two or more labels.*\\(--strict\\)$"):
        data_warnings([warning], strict=True, say=said.append)


def test_test_texts_seen_in_training_are_reported(tmp_path: Path) -> None:
    train = read_labeled(_labeled(tmp_path, "train.csv", [("Where is my refund?", "billing")]))
    test = read_labeled(
        _labeled(tmp_path, "test.csv", [("where is my REFUND", "billing"), ("Log in fails", "x")])
    )
    warning = shared_texts(train, test)
    assert warning is not None and warning.startswith(
        f"1 of the 2 texts of {test.source} (test) are also in the training data {train.source}"
    )
    assert warning.endswith("e.g. 'where is my REFUND': they inflate every score measured on it")
    assert shared_texts(test, train, "validation") is not None
    unrelated = read_labeled(_labeled(tmp_path, "other.csv", [("Nothing alike", "x")]))
    assert shared_texts(train, unrelated) is None
