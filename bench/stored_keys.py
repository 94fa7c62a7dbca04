"""What a resumed run holds for the keys of its stored rows: a set of strings against
localgen's KeySet, at 1,000,000 keys (4 labels), each in a fresh process.

Prints memory added (RSS), the time to build it and to look up 500,000 keys (half of
them stored). Run: .venv/bin/python bench/stored_keys.py (about 20 s)
"""

from __future__ import annotations

import gc
import subprocess
import sys
import time
from pathlib import Path

LABELS = ("billing", "bug", "account_access", "feature_request")
PER_LABEL = 250_000


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(kind: str) -> None:
    import polars as pl

    from localgen.generation.store import KeySet

    series = pl.Series([f"{label}-{n:06d}" for label in LABELS for n in range(PER_LABEL)])
    gc.collect()
    before, t0 = rss_mb(), time.perf_counter()
    held = KeySet(series) if kind == "KeySet" else set(series)
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    hits = sum(f"bug-{n:06d}" in held for n in range(2 * PER_LABEL))
    looked = time.perf_counter() - t0
    assert hits == PER_LABEL
    print(f"| {kind} | +{rss_mb() - before:.0f} | {built:.1f} | {looked:.1f} |")


def main() -> None:
    if len(sys.argv) > 1:
        child(sys.argv[1])
        return
    print("| 1,000,000 stored keys held as | RSS added MB | build s | 500,000 lookups s |")
    print("|---|---|---|---|")
    for kind in ("set of strings", "KeySet"):
        out = subprocess.run([sys.executable, __file__, kind], capture_output=True, text=True)
        print(out.stdout.strip() or out.stderr.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
