"""The run folder on disk: row shards, the final tables and the manifest.

Layout of a run folder:
    manifest.json          what was asked, what happened, progress; rewritten atomically
    shards/part-NNNNN.parquet   validated rows, each shard complete or absent
    drafts/part-NNNNN.parquet   first-pass outputs that are not rows (hierarchical summaries)
    checks/part-NNNNN.parquet   the label check's answer for each row
    synthetic.parquet      all rows, written once the run is complete (+ .jsonl on request)
    curated.parquet, curation.json      what `localgen curate` kept, and why it dropped rows
    comparison.json, models/            what `localgen run` measured, and its classifiers

Every file is written to a temporary name, flushed to disk and renamed, so a killed run
leaves only whole files, and a rerun of the same plan resumes from the shards. This
module does not decide what goes into rows; `localgen.generation.rows` does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from localgen.artifacts import failure_reason, write_table, write_with
from localgen.data import LabeledData, read_documents, read_labeled
from localgen.errors import OutputError, UsageError
from localgen.locks import LOCK_FILE

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SHARDS = "shards"
DRAFTS = "drafts"
CHECKS = "checks"
OUTPUT_STEM = "synthetic"
WRITE_FORMATS = ("parquet", "jsonl")
CURATED = "curated.parquet"
CURATION = "curation.json"
COMPARISON = "comparison.json"
# Entries of a run folder that --overwrite may remove (besides synthetic.* and hidden
# caches and temporary files): ours, and those of the later stages that write into it,
# named here because those stages import this module, not the other way round:
# report (metrics.json, report.html) and run (models/, documents/).
RUN_ENTRIES = (
    MANIFEST, SHARDS, DRAFTS, CHECKS, CURATED, CURATION, COMPARISON,
    "metrics.json", "report.html", "models", "documents",
)  # fmt: skip


class KeySet:
    """Stored keys, "<label>-<number of 6 or more digits>" with an optional suffix (a
    summary's "/summary"), held as sorted numbers per label: 8 bytes a key where a set of
    strings takes about 90, so a resumed run of a million rows holds 8 MB of them, not
    100. Keys of another form are kept as they are."""

    PATTERN = r"^(.*)-(\d{6,})(/.*)?$"

    def __init__(self, keys: pl.Series) -> None:
        keys = keys.unique()
        parts = keys.str.extract_groups(self.PATTERN)
        frame = pl.DataFrame(
            {
                "key": keys,
                "label": parts.struct.field("1"),
                "number": parts.struct.field("2"),
                "suffix": parts.struct.field("3").fill_null(""),
            }
        )
        # 6 digits and more, no extra leading zero: the plan's keys (f"{n:06d}")
        canonical = (
            pl.col("number").cast(pl.Int64).cast(pl.Utf8).str.zfill(6) == pl.col("number")
        ).fill_null(False)
        self._other = set(frame.filter(~canonical)["key"])
        self._numbers: dict[tuple[str, str], np.ndarray] = {}
        for (label, suffix), group in frame.filter(canonical).group_by("label", "suffix"):
            numbers = group["number"].cast(pl.Int64).to_numpy()
            self._numbers[(str(label), str(suffix))] = np.sort(numbers)
        self._len = frame.height
        self._pattern = re.compile(self.PATTERN)

    def __len__(self) -> int:
        return self._len

    def __contains__(self, key: object) -> bool:
        if not self._len or not isinstance(key, str):
            return False
        if key in self._other:
            return True
        found = self._pattern.match(key)
        if found is None:
            return False
        label, digits, suffix = found.group(1), found.group(2), found.group(3) or ""
        numbers = self._numbers.get((label, suffix))
        if numbers is None or f"{int(digits):06d}" != digits:
            return False
        i = int(np.searchsorted(numbers, int(digits)))
        return i < len(numbers) and int(numbers[i]) == int(digits)


class ShardSet:
    """A folder of Parquet shards, each written whole; `key_column` names each record."""

    def __init__(self, folder: Path, key_column: str) -> None:
        self.folder = folder
        self.key_column = key_column
        self._next: int | None = None  # the next shard's number, once the folder was listed

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.parquet"))

    def scan(self, schema: dict[str, Any]) -> pl.LazyFrame:
        files = self.files()
        return pl.scan_parquet(files) if files else pl.LazyFrame(schema=schema)

    def count(self) -> int:
        """Records stored."""
        files = self.files()
        return pl.scan_parquet(files).select(pl.len()).collect().item() if files else 0

    def buckets(self) -> dict[tuple[str, int], list[Path]]:
        """The shards holding records of each (label, bucket of SORTED_AT_ONCE row
        numbers), from their key column alone."""
        found: dict[tuple[str, int], list[Path]] = {}
        for shard in self.files():
            keys = pl.read_parquet(shard, columns=[self.key_column])[self.key_column]
            for label, bucket in _bucket_of(keys).unique().iter_rows():
                found.setdefault((label, bucket), []).append(shard)
        return found

    def keys(self, holding: str | None = None) -> KeySet:
        """Keys of the records already stored; with `holding`, of those with a value in
        that column (a shard written before the column existed has none)."""
        files = self.files()
        empty = pl.Series(self.key_column, [], dtype=pl.Utf8)
        if not files:
            return KeySet(empty)
        if holding is None:
            return KeySet(pl.scan_parquet(files).select(self.key_column).collect()[self.key_column])
        found = [
            pl.read_parquet(f, columns=[self.key_column, holding]).filter(
                pl.col(holding).is_not_null()
            )[self.key_column]
            for f in files
            if holding in pl.read_parquet_schema(f)
        ]
        return KeySet(pl.concat(found) if found else empty)

    def write(self, records: list[dict[str, Any]], schema: dict[str, Any]) -> Path:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create {self.folder}: {failure_reason(e)}") from None
        if self._next is None:  # listed once: a run of a million rows writes 5,000 shards
            self._next = len(self.files())
        path = self.folder / f"part-{self._next:05d}.parquet"
        write_table(pl.DataFrame(records, schema=schema, orient="row"), path)
        self._next += 1
        return path


class RunFolder:
    """One generation run's folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.shards = path / SHARDS
        self.rows = ShardSet(path / SHARDS, "request_key")
        self.drafts = ShardSet(path / DRAFTS, "key")
        self.checks = ShardSet(path / CHECKS, "request_key")

    @property
    def output_table(self) -> Path:
        """All rows of the finished run."""
        return self.path / f"{OUTPUT_STEM}.parquet"

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def read_manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.is_file():
            return None
        try:
            data = json.loads(self.manifest_path.read_text())
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def prepare(self, fingerprints: list[str], overwrite: bool) -> dict[str, Any] | None:
        """Make the folder ready; return the previous manifest when resuming the same plan,
        or one this plan extends (`Plan.fingerprints`)."""
        if self.path.exists() and not self.path.is_dir():
            raise OutputError(f"--out {self.path} is a file; give a folder for the run")
        previous = self.read_manifest()
        plan = (previous or {}).get("plan")
        fingerprint = plan.get("fingerprint") if isinstance(plan, dict) else None
        if fingerprint is None:
            previous = None  # no manifest, or a manifest.json of something else
        contents = self._contents() if self.path.is_dir() else []
        if contents and previous is None:
            # Never removed, --overwrite or not: localgen did not write them.
            names = sorted(p.name for p in contents)
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            raise OutputError(
                f"{self.path} holds no localgen run: it holds files localgen did not write "
                f"({shown}); choose an empty or new folder"
            )
        if contents and not overwrite and fingerprint not in fingerprints:
            raise OutputError(
                f"{self.path} holds a different run (other task, count, seed or data); "
                "choose another --out or pass --overwrite to replace it"
            )
        if overwrite and contents:
            for entry in contents:
                if self._written_by_localgen(entry):  # the user's own files stay
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            previous = None
        try:
            self.shards.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create {self.shards}: {e.strerror}") from None
        # A run killed in the middle of a write leaves its temporary file: never data.
        for folder in (self.path, self.shards, self.drafts.folder, self.checks.folder):
            for stale in folder.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
        return previous

    def forget_curation(self) -> None:
        """Remove curated.parquet and curation.json: what the rows read by other commands
        (`--rows auto`) would come from, once the run has grown past what they judged."""
        for name in (CURATED, CURATION):
            (self.path / name).unlink(missing_ok=True)

    def is_empty(self) -> bool:
        """No folder yet, or one with nothing in it but the writer lock."""
        return not self.path.is_dir() or not self._contents()

    def _contents(self) -> list[Path]:
        """What the folder holds besides the writer lock and what a run makes before its
        first manifest (an empty shard folder, the manifest's temporary file): a run
        killed then, while its engine loaded, stored nothing and starts afresh."""
        return [p for p in self.path.iterdir() if not self._before_manifest(p)]

    @staticmethod
    def _written_by_localgen(entry: Path) -> bool:
        """What the commands that work on a run folder write in it (and --overwrite
        replaces): this module's files, curate's, report's, and run's classifiers and
        labelled documents; the writer lock is held, so it stays."""
        name = entry.name
        return (
            name in RUN_ENTRIES
            or name.startswith((f"{OUTPUT_STEM}.", ".embeddings-"))
            or (name.startswith(".") and name.endswith(".tmp"))
        )

    def _before_manifest(self, entry: Path) -> bool:
        if entry.name == LOCK_FILE:
            return True
        if entry.name in (SHARDS, DRAFTS, CHECKS):
            return entry.is_dir() and not any(entry.iterdir())
        return entry.name.startswith(f".{MANIFEST}.") and entry.name.endswith(".tmp")

    def read_rows(self, columns: list[str] | None = None) -> pl.DataFrame:
        """The finished run's rows (of `columns`, else all); a clear error when the run is
        missing or unfinished."""
        table = self.output_table
        if not table.is_file():
            manifest = self.read_manifest()
            state = manifest.get("status") if manifest else None
            hint = f" (status: {state}; rerun generate to finish it)" if state else ""
            raise OutputError(f"{self.path} has no {table.name}{hint}")
        return read_table(table, columns)

    def chosen_table(self, source: str = "auto") -> Path:
        """The table of the rows to use: curated rows (auto: when curate has run) or all
        rows (raw); a clear error when it is missing."""
        curated = self.path / CURATED
        if source == "curated" or (source == "auto" and curated.is_file()):
            if not curated.is_file():
                raise OutputError(f"{self.path} has no {CURATED}; run localgen curate first")
            return curated
        self.read_rows(columns=[])  # a clear error when the run is missing or unfinished
        return self.output_table

    def chosen_rows(self, source: str = "auto") -> tuple[pl.DataFrame, str]:
        """(rows, file name) of `chosen_table`."""
        table = self.chosen_table(source)
        rows = self.read_rows() if table == self.output_table else read_table(table)
        return rows, table.name

    def real_data(
        self, path: Path | None, text_column: str = "text", label_column: str = "label"
    ) -> LabeledData | None:
        """The real data to compare the rows with: `path` when given, else the run's
        --seed-data when that file still exists."""
        if path is not None:
            return read_labeled(path, text_column, label_column)
        seed = (self.read_manifest() or {}).get("seed_data") or {}
        found = seed.get("path")
        if not found or not Path(found).is_file():
            return None
        return read_labeled(
            found, seed.get("text_column", "text"), seed.get("label_column", "label")
        )

    def documents(self) -> pl.DataFrame | None:
        """The documents the run's from-documents strategy showed (`id`, `text`), when the
        run had --documents and they are still there."""
        entry = (self.read_manifest() or {}).get("documents") or {}
        found = entry.get("path")
        if not found or not Path(found).exists():
            return None
        return read_documents(Path(found), entry.get("text_column", "text"))[0]

    def label_counts(self) -> dict[str, int]:
        files = self.rows.files()
        if not files:
            return {}
        counts = pl.scan_parquet(files).group_by("label").len().sort("label").collect()
        return {str(k): int(v) for k, v in counts.iter_rows()}

    def finalize(
        self, formats: tuple[str, ...], schema: dict[str, Any], checks: dict[str, Any]
    ) -> list[Path]:
        """Join the row shards, with the label check's answers, into the output tables,
        rows in key order (label, then row number). Memory holds one bucket of a label's
        rows (`SORTED_AT_ONCE`), one shard and one Parquet row group (`ROW_GROUP_ROWS`),
        however large the run."""
        rows, answers = self.rows.buckets(), self.checks.buckets()
        output = schema | {name: t for name, t in checks.items() if name not in schema}

        def parts() -> Iterator[pl.DataFrame]:
            for bucket in sorted(rows):
                part = _read_bucket(rows[bucket], bucket, schema)
                said = _read_bucket(answers.get(bucket, []), bucket, checks)
                said = said.unique("request_key", keep="last")
                part = part.join(said, on="request_key", how="left")
                yield part.sort(_row_number(), maintain_order=True).select(list(output))

        written = []
        for fmt in formats:
            path = self.path / f"{OUTPUT_STEM}.{fmt}"

            def write(tmp: Path, fmt: str = fmt) -> None:
                _write_parts(tmp, fmt, parts(), output)

            write_with(path, write)
            written.append(path)
        return written


def read_table(table: Path, columns: list[str] | None = None) -> pl.DataFrame:
    """A Parquet table of the run (of `columns`, else all); OutputError naming it when it
    cannot be read."""
    try:
        return pl.read_parquet(table, columns=columns)
    except (pl.exceptions.PolarsError, OSError) as e:
        raise OutputError(f"{table}: cannot read: {failure_reason(e)}") from None


SORTED_AT_ONCE = 2_000  # rows of a label per bucket when the output table is written
# Output rows per Parquet row group: buckets gathered until there are this many. The
# writer holds every row group's metadata (~50 KB for 27 columns) until the file closes:
# 167 row groups instead of 500 peak 10 MB lower at a million rows (docs/measurements.md,
# "Scale").
ROW_GROUP_ROWS = 6_000
FREE_TEXT = ("text", "attributes", "intermediate")  # columns written without statistics


def _row_number() -> pl.Expr:
    """A key's row number: keys are "<label>-<number>"."""
    return pl.col("request_key").str.extract(r"-(\d+)$", 1).cast(pl.Int64)


def _bucket_of(keys: pl.Series) -> pl.DataFrame:
    frame = pl.DataFrame({"request_key": keys})
    return frame.select(
        pl.col("request_key").str.extract(r"^(.*)-\d+$", 1).alias("label"),
        (_row_number() // SORTED_AT_ONCE).alias("bucket"),
    )


def _read_bucket(
    files: list[Path], bucket: tuple[str, int], schema: dict[str, Any]
) -> pl.DataFrame:
    """The records of `files` in `bucket`."""
    frames = [pl.read_parquet(f) for f in files]
    if not frames:
        return pl.DataFrame(schema=schema)
    # Shards written before a column existed (a run folder of an older localgen) lack it.
    frame = pl.concat(frames, how="diagonal_relaxed")
    missing = [
        pl.lit(None, kind).alias(name) for name, kind in schema.items() if name not in frame.columns
    ]
    frame = frame.with_columns(missing) if missing else frame
    where = _bucket_of(frame["request_key"])
    keep = (where["label"] == bucket[0]) & (where["bucket"] == bucket[1])
    return frame.filter(keep)


def _write_parts(
    path: Path, fmt: str, parts: Iterator[pl.DataFrame], schema: dict[str, Any]
) -> None:
    """One Parquet file (parts gathered into row groups of ROW_GROUP_ROWS rows) or JSON
    Lines file from `parts`."""
    if fmt == "jsonl":
        with path.open("wb") as f:
            for part in parts:
                part.write_ndjson(f)
        return
    # Arrow picks its C++ allocator once, when pyarrow is first imported. With pyarrow's
    # default (mimalloc), a heap of its own, a million rows peaked 17 MB higher than with
    # the system one (docs/measurements.md, "Scale").
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    import pyarrow as pa  # only here: a large import
    import pyarrow.parquet as pq

    arrow_schema = pl.DataFrame(schema=schema).to_arrow().schema
    # No min/max for free text: no reader filters on it, and the writer holds each row
    # group's statistics until the file is closed (up to 4 KB a value for long texts).
    statistics = [name for name in schema if name not in FREE_TEXT]
    held: list[pa.Table] = []
    with pq.ParquetWriter(
        path, arrow_schema, compression="zstd", write_statistics=statistics
    ) as writer:
        for part in parts:
            held.append(part.to_arrow().cast(arrow_schema))
            if sum(map(len, held)) >= ROW_GROUP_ROWS:
                writer.write_table(pa.concat_tables(held))
                held = []
        if held:
            writer.write_table(pa.concat_tables(held))


EXPORT_FORMATS = ("parquet", "jsonl", "csv")


def export_path(out: Path, fmt: str | None) -> Path:
    """The file `export` writes: `out`, with `.fmt` added when it has no suffix."""
    if fmt is None:
        return out
    if out.suffix == "":
        return out.with_name(f"{out.name}.{fmt}")
    if out.suffix != f".{fmt}":
        raise UsageError(f"--out {out.name} does not end in .{fmt}")
    return out


def export_rows(
    run_dir: Path,
    out: Path,
    fmt: str | None = None,
    source: str = "auto",
    columns: str = "all",
) -> tuple[Path, int]:
    """Write a run's rows (curated when curate has run, or as `source` says) to `out`, as
    Parquet, JSONL or CSV (`fmt`, else by suffix). CSV has no lists: list columns become
    JSON arrays. columns='minimal' keeps only text and label. Returns (file, rows)."""
    out = export_path(out, fmt)
    if out.suffix.lstrip(".") not in EXPORT_FORMATS:
        raise OutputError(f"{out.name}: the file must end in .parquet, .jsonl or .csv")
    if out.resolve().parent == run_dir.resolve() and out.stem == OUTPUT_STEM:
        raise OutputError(f"{out} is the run's own output table; choose another file")
    run = RunFolder(run_dir)
    if not run_dir.is_dir() or run.read_manifest() is None:
        raise OutputError(f"{run_dir} is not a localgen run folder (no manifest.json)")
    table = run.chosen_table(source)
    rows = pl.scan_parquet(table)
    try:  # from the file's footer: a damaged input is named here, before anything is written
        count = rows.select(pl.len()).collect().item()
        if columns == "minimal":
            rows = rows.select("text", "label")
        schema = rows.collect_schema()
    except (pl.exceptions.PolarsError, OSError) as e:
        raise OutputError(f"{table}: cannot read: {failure_reason(e)}") from None
    if out.suffix == ".csv":  # CSV has no lists: each becomes a JSON array
        rows = rows.with_columns(
            pl.col(name).map_batches(_json_arrays, return_dtype=pl.String)
            for name, dtype in schema.items()
            if isinstance(dtype, pl.List)
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {out.parent}: {e.strerror}") from None

    def sink(path: Path) -> None:
        if out.suffix == ".csv":
            rows.sink_csv(path)
        elif out.suffix == ".jsonl":
            rows.sink_ndjson(path)
        else:
            rows.sink_parquet(path)

    write_with(out, sink)  # streamed: memory holds a batch of rows; a failure names `out`
    return out, count


def _json_arrays(values: pl.Series) -> pl.Series:
    return pl.Series([None if v is None else json.dumps(v) for v in values.to_list()])
