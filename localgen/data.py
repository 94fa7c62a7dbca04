"""Read the user's labeled files (CSV, JSONL, Parquet) into a frame with `id`, `text`, `label`.

Column names are mapped by options; rows with an empty text or label are dropped and
counted. Every real example gets a stable id (a hash of its text and label) so that
generated rows can name the examples they were shown. This module does not split or
deduplicate across files; curation does that. It does say (`data_warnings`) when a file
gives one text two labels, or a test file repeats training texts (compared in the normal
form curation uses), since either corrupts what is trained or measured.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from localgen.errors import DataError
from localgen.progress import Say
from localgen.text import normalize

READ_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
TABLES = ".csv, .tsv, .jsonl or .parquet"  # the READ_FORMATS, as a message names them


# The longest real text read (about 50 pages): a longer one is almost always a whole file
# pasted into one cell, and would only be cut when it is shown in a prompt.
MAX_REAL_CHARS = 200_000
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _utf8_source(path: Path) -> Path | bytes:
    """The file, or its text re-encoded as UTF-8 where it is UTF-16 with a byte-order mark
    (what spreadsheet programs write as "Unicode text"); UTF-16 without one is refused."""
    with path.open("rb") as f:
        head = f.read(4096)
    if head.startswith(UTF16_BOMS):
        try:
            return path.read_bytes().decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{path}: starts like UTF-16 but is not valid UTF-16") from None
    if b"\x00" in head:
        raise DataError(
            f"{path}: holds NUL bytes (UTF-16 without a byte-order mark?); save it as UTF-8"
        )
    return path


def _check_lengths(path: Path, texts: pl.Series) -> None:
    lengths = texts.str.len_chars()
    longest = lengths.max()
    if isinstance(longest, int) and longest > MAX_REAL_CHARS:
        row = int(lengths.arg_max() or 0) + 1
        raise DataError(
            f"{path}: row {row} has a text of {longest:,} characters; localgen reads texts "
            f"of at most {MAX_REAL_CHARS:,} (split long documents into parts)"
        )


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


def check_data_file(path: Path, what: str = "data file", kinds: str = TABLES) -> None:
    """Fail clearly unless `path` is a file: missing, or a folder where a file is needed."""
    if path.is_dir():
        raise DataError(f"{path} is a folder; give a {what} ({kinds})")
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")


def _check_separator(path: Path, source: Path | bytes, sep: str) -> None:
    """Fail clearly on a CSV whose header is separated by ';' (what spreadsheet programs
    write where the comma is the decimal mark): polars would read one column named
    "text;label", or stop at a quoted field with a message of its own."""
    if isinstance(source, bytes):
        head = source[:4096]
    else:
        with source.open("rb") as f:
            head = f.read(4096)
    header = head.decode("utf-8", errors="replace").removeprefix("\ufeff").split("\n")[0]
    if sep not in header and ";" in header:
        wanted = (
            "tabs; save it tab-separated"
            if sep == "\t"
            else "commas; save it as comma-separated CSV (or tab-separated, as .tsv)"
        )
        raise DataError(f"{path}: the columns are separated by ';', not {wanted}")


def read_frame(path: Path) -> pl.DataFrame:
    """A CSV, TSV, JSONL or Parquet file as read; a clear error for anything else."""
    kind = READ_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unknown file type '{path.suffix}'; use {TABLES}")
    try:
        if kind == "csv":
            sep = "\t" if path.suffix.lower() == ".tsv" else ","
            # All columns as strings: labels such as "01" must not become integers.
            source = _utf8_source(path)
            _check_separator(path, source, sep)
            return pl.read_csv(source, separator=sep, infer_schema=False, encoding="utf8")
        if kind == "jsonl":
            return pl.read_ndjson(_utf8_source(path))
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError, ValueError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{path}: cannot read as {kind}: {first_line}") from None


def read_labeled(
    path: str | Path, text_column: str = "text", label_column: str = "label"
) -> LabeledData:
    """Read a labeled file and map its columns to `text` and `label`."""
    p = Path(path)
    check_data_file(p)
    if p.stat().st_size == 0:
        raise DataError(f"{p}: the file is empty")
    df = read_frame(p)
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
    _check_lengths(p, df["text"])
    ids = [content_id(t, lab, "real-") for t, lab in zip(df["text"], df["label"], strict=True)]
    df = df.with_columns(pl.Series("id", ids)).select("id", "text", "label")
    return LabeledData(frame=df, source=str(p), dropped_empty=before - df.height)


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file, stripped (blank ones too)."""
    try:
        # Split on newlines only: splitlines() would also break at U+0085 or U+2028.
        source = _utf8_source(path)
        data = source if isinstance(source, bytes) else source.read_bytes()
        return [line.strip() for line in data.decode("utf-8-sig").split("\n")]
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file") from None


def _text_table(path: Path, text_column: str, what: str) -> pl.DataFrame:
    """A table's columns with its text column renamed `text` (stripped, empty ones kept),
    or a .txt file's lines as `text`."""
    check_data_file(path, what, f".txt, {TABLES}")
    if path.suffix.lower() == ".txt":
        return pl.DataFrame({"text": read_lines(path)}, schema={"text": pl.Utf8})
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    frame = read_frame(path)
    if text_column not in frame.columns:
        raise DataError(
            f"{path}: no column '{text_column}' (columns: {', '.join(frame.columns[:10])}); "
            "name the right one with --text-column"
        )
    if text_column != "text":
        frame = frame.drop("text", strict=False).rename({text_column: "text"})
    return frame.with_columns(pl.col("text").cast(pl.Utf8).str.strip_chars())


def read_texts(path: str | Path, text_column: str = "text") -> pl.DataFrame:
    """Texts to classify: a table with a text column, or a .txt file of one text per line.
    Returns the file's columns with the text column renamed `text`; empty texts dropped."""
    p = Path(path)
    frame = _text_table(p, text_column, "data file")
    frame = frame.filter(pl.col("text").is_not_null() & (pl.col("text") != ""))
    if frame.height == 0:
        raise DataError(f"{p}: no texts in it")
    _check_lengths(p, frame["text"])
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


EXAMPLES_SHOWN = 3  # in a data warning
STRICT_HINT = "--strict makes this an error"


def _normal_forms(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        pl.col("text").map_elements(normalize, return_dtype=pl.Utf8).alias("normal")
    )


def _shown(text: str, width: int = 60) -> str:
    one_line = " ".join(text.split())
    return repr(one_line if len(one_line) <= width else one_line[: width - 1] + "…")


def label_conflicts(data: LabeledData | None) -> str | None:
    """The warning for texts that carry two or more labels in `data`, or None."""
    if data is None:
        return None
    groups = (
        _normal_forms(data.frame)
        .group_by("normal", maintain_order=True)
        .agg(pl.col("text").first(), pl.col("label").unique(maintain_order=True))
        .filter(pl.col("label").list.len() > 1)
    )
    if groups.height == 0:
        return None
    examples = "; ".join(
        f"{_shown(text)} ({', '.join(labels)})"
        for _, text, labels in groups.head(EXAMPLES_SHOWN).iter_rows()
    )
    n = groups.height
    return f"{data.source}: {n} text{'s' if n > 1 else ''} with two or more labels, e.g. {examples}"


def shared_texts(train: LabeledData, test: LabeledData, role: str = "test") -> str | None:
    """The warning for `test` rows whose text is also in `train`, or None: they inflate
    every score measured on `test`."""
    known = set(_normal_forms(train.frame)["normal"])
    tested = _normal_forms(test.frame)
    repeated = tested.filter(pl.col("normal").is_in(known)).unique("normal", maintain_order=True)
    if repeated.height == 0:
        return None
    examples = "; ".join(_shown(t) for t in repeated["text"].head(EXAMPLES_SHOWN))
    return (
        f"{repeated.height} of the {tested['normal'].n_unique()} texts of {test.source} "
        f"({role}) are also in the training data {train.source}, e.g. {examples}: "
        "they inflate every score measured on it"
    )


def data_warnings(warnings: Sequence[str | None], strict: bool, say: Say) -> None:
    """Say each warning (a line each), or, when `strict`, fail with the first."""
    found = [w for w in warnings if w]
    if strict and found:
        raise DataError(f"{found[0]} (--strict)")
    for warning in found:
        say(f"warning: {warning}; {STRICT_HINT}")


def read_task_data(
    path: str | Path, text_column: str, label_column: str, labels: list[str]
) -> LabeledData:
    """Read a labeled file whose labels must all be among the task's `labels`."""
    data = read_labeled(path, text_column, label_column)
    check_labels(data, labels)
    return data


def document_id(text: str) -> str:
    """A document's stable id: a hash of its text (documents have no label)."""
    return f"doc-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def read_documents(path: Path, text_column: str = "text") -> tuple[pl.DataFrame, dict[str, int]]:
    """The documents as (`row`, `text`, `source`): `row` is the position in the file
    (or in the folder's sorted .txt files), counted from 0 before any is dropped. Empty
    texts are dropped and a text that occurs again is kept once (its first row); the
    counts say how many of each."""
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
        if not files:
            raise DataError(f"{path}: a folder of documents must hold .txt files; it has none")
        texts = []
        for file in files:
            try:
                texts.append(file.read_text(encoding="utf-8-sig"))
            except UnicodeDecodeError:
                raise DataError(f"{file}: not a UTF-8 text file") from None
            except OSError as e:
                raise DataError(f"{file}: cannot read: {e.strerror}") from None
        frame = pl.DataFrame({"text": texts, "source": [f.name for f in files]})
    else:
        frame = _text_table(path, text_column, "documents").select("text")
        frame = frame.with_columns(pl.lit(path.name).alias("source"))
    frame = frame.with_row_index("row").with_columns(
        pl.col("row").cast(pl.Int64), pl.col("text").str.strip_chars()
    )
    total = frame.height
    frame = frame.filter(pl.col("text").is_not_null() & (pl.col("text") != ""))
    empty = total - frame.height
    if frame.height == 0:
        raise DataError(f"{path}: no documents in it (every text is empty)")
    lengths = frame["text"].str.len_chars()
    longest = int(lengths.max() or 0)  # type: ignore[arg-type]
    if longest > MAX_REAL_CHARS:
        row = frame["row"][int(lengths.arg_max() or 0)]
        raise DataError(
            f"{path}: document {row} has {longest:,} characters; localgen reads documents "
            f"of at most {MAX_REAL_CHARS:,} (split it into parts)"
        )
    normal = frame["text"].map_elements(normalize, return_dtype=pl.Utf8)
    first = normal.is_first_distinct()
    duplicates = int((~first).sum())
    frame = frame.filter(first)
    frame = frame.with_columns(pl.Series("id", [document_id(t) for t in frame["text"]]))
    return frame, {"rows": total, "empty": empty, "duplicates": duplicates}
