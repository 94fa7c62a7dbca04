"""How diverse is what each strategy writes? One run of the built-in model, all strategies.

Generates the support-tickets example with the five strategies in equal shares (one
engine, one seed, the same labels), then measures each strategy's rows *within each
label* and averages over labels, so that differences between labels do not count as
diversity:
  distinct-1/2   unique word uni/bigrams over all of them (higher: more varied wording)
  Remote Clique  mean cosine distance to the other rows (higher: more spread out)
  Chamfer        mean cosine distance to the nearest other row (higher: fewer near-copies)
  real cos       mean cosine similarity of a row to its nearest real example of the label
  words          mean words per row (distinct-n falls as texts grow longer)
Embeddings: all-MiniLM-L6-v2 (localgen.vectors.encoder). Prints a Markdown table and writes it,
with the numbers as JSON, to the run folder. Run: make bench-diversity
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import polars as pl

from localgen.config import GenerateConfig
from localgen.data import read_labeled
from localgen.generation.generate import generate
from localgen.offline import apply_offline_env
from localgen.planning.task import STRATEGIES
from localgen.report.metrics import chamfer, distinct_n, remote_clique
from localgen.text import words
from localgen.vectors.encoder import default_encoder

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "support-tickets"


def measure(rows: pl.DataFrame, real: pl.DataFrame) -> list[dict[str, object]]:
    encoder = default_encoder()
    vectors = encoder.encode(rows["text"].to_list())
    real_vectors = encoder.encode(real["text"].to_list())
    real_labels = np.array(real["label"].to_list())
    table = []
    for strategy in STRATEGIES:
        per_label = []
        for label in sorted(rows["label"].unique()):
            mask = ((rows["strategy"] == strategy) & (rows["label"] == label)).to_numpy()
            if mask.sum() < 2:
                continue
            texts = rows["text"].filter(pl.Series(mask)).to_list()
            v = vectors[mask]
            nearest_real = (v @ real_vectors[real_labels == label].T).max(axis=1).mean()
            per_label.append(
                [
                    distinct_n(texts, 1),
                    distinct_n(texts, 2),
                    remote_clique(v),
                    chamfer(v),
                    float(nearest_real),
                    len(texts),
                    float(np.mean([len(words(t)) for t in texts])),
                ]
            )
        if per_label:
            m = np.array(per_label)
            table.append(
                {
                    "strategy": strategy,
                    "rows": int(m[:, 5].sum()),
                    "distinct_1": round(float(m[:, 0].mean()), 3),
                    "distinct_2": round(float(m[:, 1].mean()), 3),
                    "remote_clique": round(float(m[:, 2].mean()), 3),
                    "chamfer": round(float(m[:, 3].mean()), 3),
                    "real_cos": round(float(m[:, 4].mean()), 3),
                    "words": round(float(m[:, 6].mean()), 1),
                }
            )
    return table


def markdown(table: list[dict[str, object]]) -> str:
    head = (
        "| strategy | rows | distinct-1 | distinct-2 | Remote Clique | Chamfer | real cos | words |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in table:
        lines.append(
            f"| {r['strategy']} | {r['rows']} | {r['distinct_1']:.3f} | {r['distinct_2']:.3f} "
            f"| {r['remote_clique']:.3f} | {r['chamfer']:.3f} | {r['real_cos']:.3f} "
            f"| {r['words']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=80, help="rows per label (all strategies)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-diversity")
    args = parser.parse_args()
    apply_offline_env()
    t0 = time.monotonic()
    result = generate(
        GenerateConfig(
            task_path=EXAMPLE / "task.toml",
            out=args.out,
            count=args.count,
            seed=args.seed,
            strategy=STRATEGIES,
            seed_data=EXAMPLE / "seed.csv",
            text_column="message",
            label_column="team",
            overwrite=True,
        ),
        say=lambda m: print(m, flush=True),
    )
    rows = pl.read_parquet(args.out / "synthetic.parquet")
    real = read_labeled(EXAMPLE / "seed.csv", "message", "team").frame
    table = measure(rows, real)
    text = markdown(table)
    print(f"\n{result.written} rows in {time.monotonic() - t0:.0f} s (seed {args.seed})\n")
    print(text)
    (args.out / "diversity.md").write_text(text + "\n")
    (args.out / "diversity.json").write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
