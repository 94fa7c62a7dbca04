from pathlib import Path

import polars as pl
import pytest

from localgen.data import check_labels, content_id, read_labeled
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
