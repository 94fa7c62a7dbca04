"""The cost of `localgen curate` and `localgen report`: wall time and peak memory.

A run of N rows is made with the fake engine (no model), with the example's 24 real
tickets as seed data. Then, each in its own child process (the real command line):
curate with an empty embedding cache, report (the cache now holds the rows), and curate
again. Embedding the rows on the CPU is most of the cost; the cache makes it once.
Peak memory is the largest max-RSS of the children. Prints a Markdown table.
Run: make bench-curation
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASK = ROOT / "examples" / "support-tickets" / "task.toml"
SEED = ROOT / "examples" / "support-tickets" / "seed.csv"
LOCALGEN = Path(sys.executable).parent / "localgen"


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([str(LOCALGEN), *args], check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000, 4_000])
    args = parser.parse_args()
    print(
        "| rows | curate, no cache (s) | report, cached (s) | curate, cached (s) | peak RSS (MB) |"
    )
    print("|---:|---:|---:|---:|---:|")
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as tmp:
            run = str(Path(tmp) / "run")
            seed = ["--seed-data", str(SEED), "--text-column", "message", "--label-column", "team"]
            timed(
                ["generate", str(TASK), "--out", run, "-n", str(rows // 4), "--engine", "fake"]
                + ["-q", *seed]
            )
            cold = timed(["curate", run, "-q"])
            report = timed(["report", run, "-q"])
            warm = timed(["curate", run, "-q"])
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"| {rows:,} | {cold:.1f} | {report:.1f} | {warm:.1f} | {peak:.0f} |", flush=True)


if __name__ == "__main__":
    main()
