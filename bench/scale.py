"""localgen's own cost at scale: 1,000 to 1,000,000 rows through the fake engine.

The fake engine answers instantly with schema-valid rows, so what is measured is
localgen alone: planning, building each request as the engine takes it, validating every
output, building rows, writing shards, the label check, and writing the output table a
bucket at a time. Each size runs in a fresh child process that reports its own peak memory (max
RSS), and the peak before the label check (the generation passes) and before the output
table is written. The first size is the baseline: it runs --repeat times, half before the
other sizes and half after (its peak moves with the machine's load), and the last column
is each peak over the median of those runs. Prints a Markdown table.
Run: make bench-scale (1,000 to 100,000 rows, about 2 minutes; --window N to compare)
     make bench-scale-1m (1,000 and 1,000,000 rows, about 15 minutes)
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from localgen.config import WINDOW

ROOT = Path(__file__).resolve().parent.parent
TASK = ROOT / "examples" / "support-tickets" / "task.toml"
SIZES = (1_000, 10_000, 100_000)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(rows: int, window: int) -> None:
    from localgen.config import EngineSettings, GenerateConfig
    from localgen.engines.fake import FakeEngine
    from localgen.generation.generate import generate
    from localgen.generation.passes import Generation
    from localgen.generation.store import RunFolder
    from localgen.models.resolve import ModelRef

    phases: dict[str, float] = {}
    check, finalize = Generation.check_labels, RunFolder.finalize

    def traced_check(*args, **kwargs):  # type: ignore[no-untyped-def]
        phases["passes_mb"] = _peak_mb()
        return check(*args, **kwargs)

    def traced_finalize(*args, **kwargs):  # type: ignore[no-untyped-def]
        phases["before_write_mb"] = _peak_mb()
        return finalize(*args, **kwargs)

    Generation.check_labels = traced_check  # type: ignore[method-assign]
    RunFolder.finalize = traced_finalize  # type: ignore[method-assign]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as tmp:
        config = GenerateConfig(
            task_path=TASK,
            out=Path(tmp) / "run",
            count=rows // 4,  # 4 labels
            strategy=("zero-shot", "attributes"),
            engine=EngineSettings(name="fake"),
            window=window,
            quiet=True,
        )
        start = time.perf_counter()
        result = generate(
            config,
            engine=FakeEngine(),
            model=ModelRef("fake", Path("."), "-"),
        )
        wall = time.perf_counter() - start
        shards = len(list((Path(tmp) / "run" / "shards").glob("part-*.parquet")))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "rows": result.written,
                "wall_s": round(wall, 2),
                "timings": result.manifest["timings"],
                "shards": shards,
                "rss_after_import_mb": round(before / 1024, 1),
                "peak_rss_mb": round(peak / 1024, 1),
                **{k: round(v, 1) for k, v in phases.items()},
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, nargs="+", default=SIZES, help="sizes to run")
    parser.add_argument("--window", type=int, default=WINDOW, help="generate's --window")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of the first size (the baseline)"
    )
    args = parser.parse_args()
    if args.child:
        child(args.child, args.window)
        return
    first, rest = args.rows[0], list(args.rows[1:])
    before = (args.repeat + 1) // 2
    order = [first] * before + rest + [first] * (args.repeat - before)
    results = []
    for rows in order:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(rows), "--window", str(args.window)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"{rows:,} rows: {results[-1]['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
    base = [r["peak_rss_mb"] for rows, r in zip(order, results, strict=True) if rows == first]
    median = statistics.median(base)
    print(
        "| rows | wall s | rows/s | shards | RSS after imports MB | peak, passes MB "
        "| peak before writing MB | peak RSS MB | peak / baseline |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['rows']:,} | {r['wall_s']:.1f} | {r['rows'] / r['wall_s']:.0f} | "
            f"{r['shards']} | {r['rss_after_import_mb']:.0f} | {r['passes_mb']:.0f} | "
            f"{r['before_write_mb']:.0f} | {r['peak_rss_mb']:.0f} | "
            f"{r['peak_rss_mb'] / median:.2f} |"
        )
    print(
        f"\nBaseline: {first:,} rows, {len(base)} runs, peak {min(base):.0f}-{max(base):.0f} MB, "
        f"median {median:.0f} MB; the table's runs in the order they ran."
    )


if __name__ == "__main__":
    main()
