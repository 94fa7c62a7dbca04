"""How fast the sentence encoder embeds rows on this CPU: threads, and batch order.

The rows are those `localgen generate --engine fake` makes for the support-tickets
example (short, of mixed length, as the curation benchmark uses). Three ways, the same
rows, order alternated over rounds, rows/s of each:
- one torch thread, each 64-row batch in the rows' own order (the encoder until 2026-12-06);
- torch's own thread count (a thread per core), batches in the rows' order;
- torch's own thread count, batches cut from the rows sorted longest first (the encoder now).
A batch pads to its longest row, so sorting first pads less. Prints a Markdown table.
Run: make bench-encoder
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
TASK = ROOT / "examples" / "support-tickets" / "task.toml"
LOCALGEN = Path(sys.executable).parent / "localgen"


def fake_rows(rows: int) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        subprocess.run(
            [str(LOCALGEN), "generate", str(TASK), "--out", str(run), "-n", str(rows // 4)]
            + ["--engine", "fake", "-q"],
            check=True,
            capture_output=True,
        )
        return pl.read_parquet(run / "synthetic.parquet")["text"].to_list()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_560)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import torch

    from localgen.vectors.encoder import BATCH, Encoder

    texts = fake_rows(args.rows)
    one, own = Encoder(threads=1), Encoder()

    def in_order(encoder: Encoder) -> Callable[[], object]:
        # one call per batch: each call sorts only its own batch, so nothing is reordered
        return lambda: [encoder.encode(texts[s : s + BATCH]) for s in range(0, len(texts), BATCH)]

    ways = {
        "1 thread, rows' order": in_order(one),
        f"{torch.get_num_threads()} threads, rows' order": in_order(own),
        f"{torch.get_num_threads()} threads, longest first": lambda: own.encode(texts),
    }
    rates: dict[str, list[float]] = {name: [] for name in ways}
    for round_ in range(args.rounds):
        names = list(ways) if round_ % 2 == 0 else list(ways)[::-1]
        for name in names:
            start = time.perf_counter()
            ways[name]()
            rates[name].append(len(texts) / (time.perf_counter() - start))
    first = statistics.mean(rates[next(iter(ways))])
    print(f"{len(texts):,} rows, {args.rounds} rounds, order alternated\n")
    print("| way | rows/s per round | mean rows/s | vs 1 thread, rows' order |")
    print("|---|---|---:|---:|")
    for name, values in rates.items():
        mean = statistics.mean(values)
        shown = " / ".join(f"{v:.0f}" for v in values)
        print(f"| {name} | {shown} | {mean:.0f} | {mean / first:.2f}x |")


if __name__ == "__main__":
    main()
