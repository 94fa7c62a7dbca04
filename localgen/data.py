"""Read the user's labeled files (CSV, JSONL, Parquet) into a frame with `id`, `text`, `label`.

Column names are mapped by options; rows with an empty text or label are dropped and
counted. Every real example gets a stable id (a hash of its text and label) so that
generated rows can name the examples they were shown. This module does not split or
deduplicate across files; curation does that.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from localgen.errors import DataError

READ_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def content_id(text: str, label: str, prefix: str = "") -> str:
    """Stable id of a (text, label) pair: the first 16 hex digits of its SHA-256."""
    digest = hashlib.sha256(f"{label}\x1f{text}".encode()).hexdigest()[:16]
    return prefix + digest


@dataclass(frozen=True)
class LabeledData:
    """Real labeled examples: `frame` has columns id, text, label."""

    frame: pl.DataFrame
    source: str
    dropped_empty: int

    def by_label(self) -> dict[str, pl.DataFrame]:
        return {str(k[0]): g for k, g in self.frame.group_by("label", maintain_order=True)}


def _read_frame(path: Path) -> pl.DataFrame:
    kind = READ_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"{path}: unknown file type '{path.suffix}'; use .csv, .tsv, .jsonl or .parquet"
        )
    try:
        if kind == "csv":
            sep = "\t" if path.suffix.lower() == ".tsv" else ","
            # All columns as strings: labels such as "01" must not become integers.
            return pl.read_csv(path, separator=sep, infer_schema=False, encoding="utf8")
        if kind == "jsonl":
            return pl.read_ndjson(path)
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError, ValueError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{path}: cannot read as {kind}: {first_line}") from None


def read_labeled(
    path: str | Path, text_column: str = "text", label_column: str = "label"
) -> LabeledData:
    """Read a labeled file and map its columns to `text` and `label`."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file not found: {p}")
    if p.stat().st_size == 0:
        raise DataError(f"{p}: the file is empty")
    df = _read_frame(p)
    for wanted, option in ((text_column, "--text-column"), (label_column, "--label-column")):
        if wanted not in df.columns:
            raise DataError(
                f"{p}: no column '{wanted}' (columns: {', '.join(df.columns[:10])}); "
                f"name the right one with {option}"
            )
    df = df.select(
        pl.col(text_column).cast(pl.Utf8).str.strip_chars().alias("text"),
        pl.col(label_column).cast(pl.Utf8).str.strip_chars().alias("label"),
    )
    before = df.height
    df = df.filter(
        pl.col("text").is_not_null()
        & (pl.col("text") != "")
        & pl.col("label").is_not_null()
        & (pl.col("label") != "")
    )
    if df.height == 0:
        raise DataError(f"{p}: no rows with both a text and a label")
    ids = [content_id(t, lab, "real-") for t, lab in zip(df["text"], df["label"], strict=True)]
    df = df.with_columns(pl.Series("id", ids)).select("id", "text", "label")
    return LabeledData(frame=df, source=str(p), dropped_empty=before - df.height)


def read_texts(path: str | Path, text_column: str = "text") -> pl.DataFrame:
    """Texts to classify: a table with a text column, or a .txt file of one text per line.
    Returns the file's columns with the text column renamed `text`; empty texts dropped."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file not found: {p}")
    if p.suffix.lower() == ".txt":
        try:
            lines = p.read_text(encoding="utf-8").split("\n")
        except UnicodeDecodeError:
            raise DataError(f"{p}: not a UTF-8 text file") from None
        frame = pl.DataFrame({"text": [line.strip() for line in lines]}, schema={"text": pl.Utf8})
    else:
        if p.stat().st_size == 0:
            raise DataError(f"{p}: the file is empty")
        frame = _read_frame(p)
        if text_column not in frame.columns:
            raise DataError(
                f"{p}: no column '{text_column}' (columns: {', '.join(frame.columns[:10])}); "
                "name the right one with --text-column"
            )
        if text_column != "text":
            frame = frame.drop("text", strict=False).rename({text_column: "text"})
        frame = frame.with_columns(pl.col("text").cast(pl.Utf8).str.strip_chars())
    frame = frame.filter(pl.col("text").is_not_null() & (pl.col("text") != ""))
    if frame.height == 0:
        raise DataError(f"{p}: no texts in it")
    return frame


def check_labels(
    data: LabeledData,
    labels: Sequence[str],
    known_as: str = "the task file",
    listed_as: str = "the task declares",
) -> None:
    """Fail if the data holds labels outside `labels` (the task's, or a model's)."""
    unknown = sorted(set(data.frame["label"].unique().to_list()) - set(labels))
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5])
        raise DataError(
            f"{data.source}: labels not in {known_as}: {shown}; {listed_as} {', '.join(labels)}"
        )


def read_task_data(
    path: str | Path, text_column: str, label_column: str, labels: list[str]
) -> LabeledData:
    """Read a labeled file whose labels must all be among the task's `labels`."""
    data = read_labeled(path, text_column, label_column)
    check_labels(data, labels)
    return data


SYNTHETIC_ID = re.compile(r"^syn-[0-9a-f]{16}$")


@dataclass(frozen=True)
class Rejected:
    """A text the user does not want more of; `label` None means: for every label."""

    id: str
    text: str
    label: str | None


def _rows_by_id(run_dir: Path) -> dict[str, tuple[str, str]]:
    table = run_dir / "synthetic.parquet"
    if not table.is_file():
        return {}
    frame = pl.read_parquet(table, columns=["id", "text", "label"])
    return {i: (t, lab) for i, t, lab in frame.iter_rows()}


def read_rejects(path: str | Path) -> list[Rejected]:
    """Read `--reject FILE`: texts or generated-row ids the user rejected.

    A .txt file holds one entry per line; a table (CSV, JSONL, Parquet) has a `text` or
    an `id` column and may have a `label` column. An id (`syn-` + 16 hex digits) is looked
    up in the synthetic.parquet next to the file, the run the user reviewed.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"reject file not found: {p}")
    if p.suffix.lower() == ".txt":
        try:
            # Split on newlines only: splitlines() would also break at U+0085 or U+2028.
            lines = p.read_text(encoding="utf-8").split("\n")
        except UnicodeDecodeError:
            raise DataError(f"{p}: not a UTF-8 text file") from None
        entries: list[tuple[str, str | None]] = [(s.strip(), None) for s in lines if s.strip()]
    else:
        frame = _read_frame(p)
        column = "text" if "text" in frame.columns else "id" if "id" in frame.columns else None
        if column is None:
            raise DataError(f"{p}: needs a 'text' or an 'id' column")
        labels = frame["label"].cast(pl.Utf8) if "label" in frame.columns else None
        values = frame[column].cast(pl.Utf8).to_list()
        entries = [
            (str(v).strip(), None if labels is None else labels[i])
            for i, v in enumerate(values)
            if v is not None and str(v).strip()
        ]
    if not entries:
        raise DataError(f"{p}: no rejected texts or ids in it")
    known: dict[str, tuple[str, str]] | None = None
    out = []
    for value, label in entries:
        if SYNTHETIC_ID.match(value):
            known = _rows_by_id(p.parent) if known is None else known
            if value not in known:
                raise DataError(f"{p}: id {value} is not in {p.parent / 'synthetic.parquet'}")
            text, label = known[value]
            out.append(Rejected(value, text, label))
        else:
            out.append(Rejected(content_id(value, label or "", "rej-"), value, label))
    return out
