"""localgen's own cost at scale: 1,000 to 20,000 rows through the fake engine.

The fake engine answers instantly with schema-valid rows, so what is measured is
localgen alone: planning and rendering prompts, validating every output, building rows,
writing shards and joining them into the output table. Each size runs in a fresh child
process that reports its own peak memory (max RSS). Prints a Markdown table.
Run: make bench-scale
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASK = ROOT / "examples" / "support-tickets" / "task.toml"
SIZES = (1_000, 5_000, 20_000)


def child(rows: int) -> None:
    from localgen.config import EngineSettings, GenerateConfig
    from localgen.engines.fake import FakeEngine
    from localgen.generation.generate import generate
    from localgen.models.resolve import ModelRef

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as tmp:
        config = GenerateConfig(
            task_path=TASK,
            out=Path(tmp) / "run",
            count=rows // 4,  # 4 labels
            strategy=("zero-shot", "attributes"),
            engine=EngineSettings(name="fake"),
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
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    print("| rows | wall s | rows/s | shards | RSS after imports MB | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for rows in SIZES:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(rows)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"| {r['rows']:,} | {r['wall_s']:.1f} | {r['rows'] / r['wall_s']:.0f} | "
            f"{r['shards']} | {r['rss_after_import_mb']:.0f} | {r['peak_rss_mb']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
