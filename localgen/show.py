"""Read a finished run back for people: a count per label and the first rows."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from localgen.errors import OutputError
from localgen.store import OUTPUT_STEM, RunFolder


def head(run_dir: Path, limit: int, as_json: bool = False) -> str:
    table = run_dir / f"{OUTPUT_STEM}.parquet"
    if not table.is_file():
        manifest = RunFolder(run_dir).read_manifest()
        state = manifest.get("status") if manifest else None
        hint = f" (status: {state}; rerun generate to finish it)" if state else ""
        raise OutputError(f"{run_dir} has no {table.name}{hint}")
    frame = pl.read_parquet(table)
    if as_json:
        return "\n".join(json.dumps(r) for r in frame.head(limit).iter_rows(named=True))
    counts = frame.group_by("label").len().sort("label")
    lines = [f"{frame.height} rows: " + ", ".join(f"{k} {v}" for k, v in counts.iter_rows())]
    for row in frame.head(limit).iter_rows(named=True):
        lines.append(f"[{row['label']}] {row['text']}")
    return "\n".join(lines)
