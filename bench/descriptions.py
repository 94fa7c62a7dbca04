"""Label descriptions as training rows: does one row per label, its description from the
task file, help a classifier trained on a few real rows per label?

The datasets and split of bench/real_data.py (SMS spam, TREC-6, BBC News; seed 0, 20%
test) and their task files in bench/tasks (each label's description written once, before
this benchmark). For each real sample (`--seeds`, `--per-label` rows per label from the
training pool), the frozen all-MiniLM-L6-v2 + logistic-regression classifier on real only
and on real + the descriptions at each factor of `--weights` (what `--descriptions-weight`
sets), scored on the same test rows: the paired difference in macro-F1 with a 95%
bootstrap interval. Then, with `--documents DIR...` (folders bench/unlabeled.py wrote,
seed 0, each with a label run per model), real + the chosen documents (their weight chosen
as `train --documents` does) with and without the descriptions at the default factor: what
`run --documents` compares as "real + documents" and "all of them".

Decided from seeds 0-3 at 8 per label (`--seeds 0 1 2 3`), before the rest was scored:
the descriptions join by default at factor 4 if on seeds 4-7 at 8 per label they lose on
no sample (interval below 0) and gain on average, and at 32 per label they lose on none.

Writes runs/bench-descriptions/results.md.
Run: python bench/descriptions.py --seeds 0 1 2 3 4 5 6 7 (a few minutes); add
--per-label 32, or --documents runs/bench-unlabeled runs/bench-unlabeled-2000-qwen.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_data import DATASETS, TASKS, ci, clean, sample, split  # noqa: E402

from localgen.classify.evaluation import paired_difference, score  # noqa: E402
from localgen.classify.train import (  # noqa: E402
    fit,
    label_descriptions,
    load_encoder,
    training_set,
)
from localgen.config import TrainSettings  # noqa: E402
from localgen.data import read_labeled  # noqa: E402
from localgen.documents.label import chosen_documents  # noqa: E402
from localgen.offline import apply_offline_env  # noqa: E402
from localgen.vectors.linear import fit_linear  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = (1.0, 2.0, 4.0, 8.0, 16.0)


def descriptions(name: str) -> dict[str, str]:
    """Label -> description of the dataset's task file, in label order (what `run` adds)."""
    return dict(sorted(label_descriptions(TASKS / f"{name}.toml", TrainSettings()).items()))


def _shown(diff: dict) -> str:
    low, high = diff["ci"]
    return f"{diff['macro_f1_difference']:+.3f} [{low:+.3f}, {high:+.3f}]"


def _sign(diff: dict) -> int:
    low, high = diff["ci"]
    return 1 if low > 0 else -1 if high < 0 else 0


def samples(args: argparse.Namespace, encoder) -> list[str]:
    """Real only against real + descriptions at each weight, per dataset and real sample."""
    lines = [
        f"Real samples {args.seeds}, {args.per_label} real rows per label; paired difference "
        "to real only:",
        "",
        "| dataset | sample | " + " | ".join(f"weight {w:g}" for w in args.weights) + " |",
        "|---" * (2 + len(args.weights)) + "|",
    ]
    totals: dict[float, list[dict]] = {w: [] for w in args.weights}
    for name in args.datasets:
        described = descriptions(name)
        labels = list(described)
        vectors = encoder.encode(list(described.values()))
        train, test = split(clean(DATASETS[name]()), 0.2, 0)
        truth = test["label"].to_list()
        test_vectors = encoder.encode(test["text"].to_list())
        for seed in args.seeds:
            real = sample(train, args.per_label, seed)
            real_vectors = encoder.encode(real["text"].to_list())
            real_labels = real["label"].to_list()
            base = fit_linear(real_vectors, real_labels, labels).predict(test_vectors)
            cells = []
            for w in args.weights:
                both = np.concatenate([real_vectors, vectors])
                factors = np.concatenate([np.ones(len(real_vectors)), np.full(len(labels), w)])
                head = fit_linear(both, real_labels + labels, labels, factors=factors)
                diff = paired_difference(truth, base, head.predict(test_vectors))
                totals[w].append(diff)
                cells.append(_shown(diff))
            lines.append(f"| {name} | {seed} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    lines += [
        "",
        "| weight | samples | mean difference | gains (interval > 0) | losses |",
        "|---|---|---|---|---|",
    ]
    for w, diffs in totals.items():
        signs = [_sign(d) for d in diffs]
        mean = np.mean([d["macro_f1_difference"] for d in diffs])
        lines.append(
            f"| {w:g} | {len(diffs)} | {mean:+.4f} | {signs.count(1)} | {signs.count(-1)} |"
        )
    return lines


def with_documents(args: argparse.Namespace, encoder) -> list[str]:
    """Real + the chosen documents, without and with the descriptions, against real only."""
    lines = [
        "",
        f"With the chosen documents (their weight auto), descriptions at {args.default:g}:",
        "",
        "| folder / dataset / model | real only | + documents | + documents + descriptions |",
        "|---|---|---|---|",
    ]
    for folder in args.documents:
        for name in args.datasets:
            where = folder / name
            if not (where / "real.csv").is_file():
                continue
            real = read_labeled(where / "real.csv")
            test = pl.read_csv(where / "test.csv")
            truth = test["label"].to_list()
            test_vectors = encoder.encode(test["text"].to_list())
            base = fit(training_set(encoder, real, None), TrainSettings(), args.out / "m").head
            real_only = base.predict(test_vectors)
            for run in sorted(p for p in where.iterdir() if (p / "labeled.parquet").is_file()):
                docs = chosen_documents(run)
                scores = []
                for extra in ({}, descriptions(name)):
                    data = training_set(encoder, real, None, documents=docs, descriptions=extra)
                    settings = TrainSettings(descriptions_weight=args.default)
                    head = fit(data, settings, args.out / "m").head
                    scores.append(
                        _shown(paired_difference(truth, real_only, head.predict(test_vectors)))
                    )
                alone = ci(score(truth, real_only)["macro_f1"])
                lines.append(
                    f"| {folder.name} / {name} / {run.name} | {alone} | "
                    + " | ".join(scores)
                    + " |"
                )
                print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2, 3])
    parser.add_argument("--per-label", type=int, default=8)
    parser.add_argument("--weights", nargs="+", type=float, default=list(WEIGHTS))
    parser.add_argument("--default", type=float, default=TrainSettings.descriptions_weight)
    parser.add_argument("--documents", nargs="*", type=Path, default=[])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-descriptions")
    args = parser.parse_args()
    apply_offline_env()
    encoder = load_encoder(None)
    lines = samples(args, encoder) if args.seeds else []
    if args.documents:
        lines += with_documents(args, encoder)
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
