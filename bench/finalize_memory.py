"""Where the memory of writing the output table goes, at 1,000 to 1,000,000 rows.

`generate` ends by joining its shards into synthetic.parquet a bucket at a time
(`RunFolder.finalize`). This measures that step alone, in a fresh process per size, on
shard sets made by copying the shards of one 1,000-row fake-engine run (row numbers
shifted per copy, so the sets are what a run of that size stores, in 200-row shards).
Each child imports everything first, then reports its RSS before the step, after the
shards' buckets are found, after the first row group, every 100 row groups, and its
peak, and the same step with the rows read and sorted but nothing written (so the
Parquet writer's share shows). Prints a Markdown table.
Run: .venv/bin/python bench/finalize_memory.py (about 5 minutes; the sets go to a
temporary folder, about 0.5 GB). `--footer 5 500 2000`: the writer alone, that many row
groups of the same 1,000 output rows, and what it holds before and after close.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASK = ROOT / "examples" / "support-tickets" / "task.toml"
SIZES = (1_000, 100_000, 1_000_000)
COPY = 1_000  # rows per copy of the base run: 250 per label


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def make_sets(folder: Path, sizes: list[int]) -> None:
    import polars as pl

    from localgen.config import EngineSettings, GenerateConfig
    from localgen.engines.fake import FakeEngine
    from localgen.generation.generate import generate
    from localgen.models.resolve import ModelRef

    base = folder / "base"
    config = GenerateConfig(
        task_path=TASK,
        out=base,
        count=COPY // 4,
        strategy=("zero-shot", "attributes"),
        engine=EngineSettings(name="fake"),
        quiet=True,
    )
    generate(config, engine=FakeEngine(), model=ModelRef("fake", Path("."), "-"))
    label = pl.col("request_key").str.extract(r"^(.*)-\d+$", 1)
    number = pl.col("request_key").str.extract(r"-(\d+)$", 1).cast(pl.Int64)
    for part in ("shards", "checks"):
        frames = [pl.read_parquet(p) for p in sorted((base / part).glob("part-*.parquet"))]
        for n in sizes:
            out = folder / f"set-{n}" / part
            out.mkdir(parents=True, exist_ok=True)
            i = 0
            for k in range(n // COPY):
                shift = number + k * (COPY // 4)
                key = (label + "-" + shift.cast(pl.Utf8).str.zfill(6)).alias("request_key")
                for frame in frames:
                    copy = frame.with_columns(key)
                    if "id" in copy.columns:
                        copy = copy.with_columns(pl.col("id") + f"-{k}")
                    copy.write_parquet(out / f"part-{i:05d}.parquet")
                    i += 1
    for n in sizes:
        shutil.copy(base / "manifest.json", folder / f"set-{n}" / "manifest.json")


def child(folder: Path, write: bool) -> None:
    import polars as pl  # noqa: F401  (imported before the first reading)
    import pyarrow.parquet as pq

    from localgen.generation import store
    from localgen.generation.rows import CHECK_SCHEMA, ROW_SCHEMA

    trace: dict[str, float] = {"before": rss_mb()}
    original = store.ShardSet.buckets

    def buckets(self: store.ShardSet) -> dict[tuple[str, int], list[Path]]:
        out = original(self)
        trace["buckets found"] = rss_mb()
        return out

    write_table, close = pq.ParquetWriter.write_table, pq.ParquetWriter.close

    def traced_write(self, table, row_group_size=None) -> None:
        if write:
            write_table(self, table, row_group_size)
        n = trace["groups"] = trace.get("groups", 0) + 1
        if n == 1 or n % 100 == 0:
            trace[f"row group {n}"] = rss_mb()

    def traced_close(self) -> None:
        close(self)
        trace["closed"] = rss_mb()

    store.ShardSet.buckets = buckets  # type: ignore[method-assign]
    pq.ParquetWriter.write_table = traced_write  # store._write_parts's own writer, traced
    pq.ParquetWriter.close = traced_close
    store.RunFolder(folder).finalize(("parquet",), ROW_SCHEMA, CHECK_SCHEMA)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"trace": {k: round(v, 1) for k, v in trace.items()}, "peak": round(peak, 1)}))


def footer(folder: Path, groups: int) -> None:
    """The writer alone: `groups` row groups, each the same 1,000 output rows, through
    pyarrow's ParquetWriter; RSS before the first, before close and after, and the
    footer's size."""
    import gc

    import pyarrow.parquet as pq

    table = pq.read_table(folder / "base" / "synthetic.parquet")
    with pq.ParquetWriter(folder / "warm.parquet", table.schema, compression="zstd") as w:
        w.write_table(table)  # the writer's own first-use cost, outside the count
    gc.collect()
    before = rss_mb()
    out = folder / f"footer-{groups}.parquet"
    with pq.ParquetWriter(out, table.schema, compression="zstd") as writer:
        for _ in range(groups):
            writer.write_table(table)
        open_mb = rss_mb()
    size = pq.read_metadata(out).serialized_size
    print(json.dumps({"before": before, "open": open_mb, "closed": rss_mb(), "footer": size}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--footer-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, nargs="+", default=list(SIZES))
    parser.add_argument(
        "--footer",
        type=int,
        nargs="+",
        metavar="GROUPS",
        help="instead: the writer alone, this many row groups of 1,000 rows each",
    )
    args = parser.parse_args()
    if args.child:
        if args.footer_child:
            footer(args.child, args.footer_child)
        else:
            child(args.child, not args.no_write)
        return
    if args.footer:
        with tempfile.TemporaryDirectory() as tmp:
            make_sets(Path(tmp), [])
            print("| row groups | before MB | before close | after close | footer MB |")
            print("|---|---|---|---|---|")
            for groups in args.footer:
                cmd = [sys.executable, __file__, "--child", tmp, "--footer-child", str(groups)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(
                    f"| {groups} | {r['before']:.0f} | +{r['open'] - r['before']:.0f} "
                    f"| +{r['closed'] - r['before']:.0f} | {r['footer'] / 1e6:.2f} |",
                    flush=True,
                )
        return
    with tempfile.TemporaryDirectory() as tmp:
        make_sets(Path(tmp), args.rows)
        print(
            "| rows | row groups | RSS before MB | buckets found | after row group 1 "
            "| last traced | closed | peak | peak - before | peak, nothing written |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for n in args.rows:
            runs = {}
            for no_write in (False, True):
                cmd = [sys.executable, __file__, "--child", str(Path(tmp) / f"set-{n}")]
                out = subprocess.run(
                    cmd + (["--no-write"] if no_write else []),
                    capture_output=True,
                    text=True,
                    check=True,
                )
                runs[no_write] = json.loads(out.stdout.strip().splitlines()[-1])
            t, peak = runs[False]["trace"], runs[False]["peak"]
            last = [k for k in t if k.startswith("row group")][-1]
            print(
                f"| {n:,} | {t['groups']:.0f} | {t['before']:.0f} | {t['buckets found']:.0f} "
                f"| {t['row group 1']:.0f} | {t[last]:.0f} | {t['closed']:.0f} | {peak:.0f} "
                f"| +{peak - t['before']:.0f} | {runs[True]['peak']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
