"""`--reject FILE`: the texts, or generated rows by id, that the user does not want more of.

The contrastive strategy shows them as examples to differ from. An id is looked up in the
run folder the file lies in (the run the user reviewed)."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from localgen.data import TABLES, check_data_file, content_id, read_frame, read_lines
from localgen.errors import DataError
from localgen.generation.store import RunFolder
from localgen.planning.requests import Rejected

SYNTHETIC_ID = re.compile(r"^syn-[0-9a-f]{16}$")


def _rows_by_id(run_dir: Path) -> dict[str, tuple[str, str]]:
    table = RunFolder(run_dir).output_table
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
    check_data_file(p, "reject file", f".txt, {TABLES}")
    if p.suffix.lower() == ".txt":
        entries: list[tuple[str, str | None]] = [(s, None) for s in read_lines(p) if s]
    else:
        frame = read_frame(p)
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
                raise DataError(f"{p}: id {value} is not in {RunFolder(p.parent).output_table}")
            text, label = known[value]
            out.append(Rejected(value, text, label))
        else:
            out.append(Rejected(content_id(value, label or "", "rej-"), value, label))
    return out
