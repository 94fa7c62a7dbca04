"""A weight per generated row: does weighing each row by how well it fits its label keep
the gains of synthetic rows without their losses?

Reads the folders bench/unlabeled.py wrote (`--samples`: one per real sample; each holds
a folder per dataset with real.csv, test.csv and the curated runs `<model>-generated`,
few-shot, and `<model>-from-documents`). For every run, the frozen all-MiniLM-L6-v2 +
logistic-regression classifier on real only, and on real + the run's curated rows with
each rule of `--synthetic-weight` in RULES:
- auto: one factor for all rows, the one of 0, 0.1, 0.25, 0.5, 1 that cross-validation on
  the real rows prefers (the macro_f1 gate; `run`'s default before `fit`);
- 1 and 0.1: one fixed factor for all rows;
- fit: each row its own factor, the probability that a classifier on the real rows alone
  gives the row's label.
With --with-documents, where the dataset folder also holds that model's label run
(`localgen label`), the chosen documents join too (their weight chosen as `train
--documents` does): + documents + generated under auto and under fit (slow: two
cross-validations over every chosen document). Each scored on the same real test rows: macro-F1 with
95% bootstrap intervals and the paired difference to real only. The summary counts, per
rule, the runs where it gains and loses with the interval clear of 0, the sum of the
differences, and the runs where weight 1 gains and the rule does not (a gain thrown away).

Decided from the first sample's runs (runs/bench-unlabeled and -500, seed 0), before the
second sample's were scored (runs/bench-unlabeled-seed1: rows generated from another real
sample and split, `bench/unlabeled.py --documents 200 --generate 32 --seed 1`): `fit`
becomes the default of --synthetic-weight, and so `run`'s, if on the second sample's runs
it has no run with a significant loss, at least as many significant gains as auto, and a
sum of differences at least auto's.

Writes runs/bench-row-weights/results.md and results.json.
Run: python bench/row_weights.py --samples runs/bench-unlabeled runs/bench-unlabeled-500
(minutes; the rows come from `python bench/unlabeled.py ... --generate 32`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_data import ci  # noqa: E402

from localgen.classify.evaluation import paired_difference, score  # noqa: E402
from localgen.classify.train import fit, load_encoder, training_set  # noqa: E402
from localgen.config import TrainSettings  # noqa: E402
from localgen.data import read_labeled  # noqa: E402
from localgen.documents.label import chosen_documents  # noqa: E402
from localgen.offline import apply_offline_env  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RULES: dict[str, str | float] = {"auto": "auto", "1": 1.0, "0.1": 0.1, "fit": "fit"}
KINDS = ("generated", "from-documents")
WITH_DOCUMENTS = ("auto", "fit")  # rules also tried with the chosen documents


def runs(sample: Path) -> list[tuple[Path, str, str]]:
    """(dataset folder, model, kind) of every curated run in a sample folder."""
    found = []
    for folder in sorted(p for p in sample.iterdir() if (p / "real.csv").is_file()):
        for kind in KINDS:
            for run in sorted(folder.glob(f"*-{kind}")):
                if (run / "curated.parquet").is_file():
                    found.append((folder, run.name.removesuffix(f"-{kind}"), kind))
    return found


def evaluate(
    folder: Path, model: str, kind: str, encoder: Any, out: Path, with_documents: bool
) -> dict[str, Any]:
    """Every rule on one run, paired with real only on the dataset's test rows."""
    real = read_labeled(folder / "real.csv")
    test = pl.read_csv(folder / "test.csv")
    truth = test["label"].to_list()
    vectors = encoder.encode(test["text"].to_list())
    run = folder / f"{model}-{kind}"

    def predicted(data: Any, settings: TrainSettings, name: str) -> tuple[list[str], Any]:
        trained = fit(data, settings, out / f"{folder.name}-{model}-{kind}-{name}")
        return trained.head.predict(vectors), trained.info["training"]

    base, _ = predicted(training_set(encoder, real, None), TrainSettings(), "real")
    result: dict[str, Any] = {"real only": score(truth, base)}
    data = training_set(encoder, real, run)
    result["rows"] = data.counts().get("synthetic", {})
    documents = None
    if with_documents and (folder / model / "labeled.parquet").is_file():
        documents = chosen_documents(folder / model)
    for name, setting in RULES.items():
        t0 = time.monotonic()
        guess, training = predicted(data, TrainSettings(synthetic_weight=setting), name)
        mix = training["synthetic_weight"]
        result[name] = score(truth, guess) | {
            "vs real only": paired_difference(truth, base, guess),
            "weight": mix["chosen"],
            "seconds": round(time.monotonic() - t0, 2),
        }
    if documents is not None and documents.height:
        mixed = training_set(encoder, real, run, documents=documents)
        for name in WITH_DOCUMENTS:
            settings = TrainSettings(synthetic_weight=RULES[name])
            guess, training = predicted(mixed, settings, f"documents-{name}")
            result[f"+ documents, {name}"] = score(truth, guess) | {
                "vs real only": paired_difference(truth, base, guess),
                "weight": training["synthetic_weight"]["chosen"],
                "documents weight": training["documents_weight"]["chosen"],
            }
    return result


def _difference(entry: dict[str, Any]) -> str:
    diff = entry["vs real only"]
    low, high = diff["ci"]
    return f"{diff['macro_f1_difference']:+.3f} [{low:+.3f}, {high:+.3f}]"


def _sign(entry: dict[str, Any]) -> int:
    low, high = entry["vs real only"]["ci"]
    return 1 if low > 0 else -1 if high < 0 else 0


def table(results: dict[str, Any]) -> str:
    rules = list(RULES) + [
        f"+ documents, {name}"
        for name in WITH_DOCUMENTS
        if any(f"+ documents, {name}" in got for got in results.values())
    ]
    lines = [
        "| sample / dataset / model / rows | synthetic rows | real only | "
        + " | ".join(rules)
        + " |",
        "|---" * (3 + len(rules)) + "|",
    ]
    for key, got in results.items():
        cells = [
            f"{_difference(got[r])} (w {got[r]['weight']:g})" if r in got else "" for r in rules
        ]
        rows = sum(got["rows"].values())
        lines.append(
            f"| {key} | {rows} | {ci(got['real only']['macro_f1'])} | {' | '.join(cells)} |"
        )
    lines += [
        "",
        "| rule | runs | gains (interval > 0) | losses (interval < 0) | sum of "
        "differences | weight 1's gains kept | seconds per fit |",
        "|---|---|---|---|---|---|---|",
    ]
    for rule in RULES:
        entries = [got for got in results.values() if rule in got]
        seconds = np.mean([got[rule]["seconds"] for got in entries])
        lines.append(f"{tally(entries, rule)} {seconds:.1f} |")
    return "\n".join(lines)


def tally(entries: list[dict[str, Any]], rule: str) -> str:
    """A summary line of `rule` over runs (open at its end): runs, gains and losses with
    the interval clear of 0, the sum of the differences, and weight 1's gains it keeps."""
    signs = [_sign(got[rule]) for got in entries]
    total = sum(got[rule]["vs real only"]["macro_f1_difference"] for got in entries)
    ones = [got for got in entries if _sign(got["1"]) > 0]
    kept = sum(_sign(got[rule]) > 0 for got in ones)
    return (
        f"| {rule} | {len(entries)} | {signs.count(1)} | {signs.count(-1)} | {total:+.3f} | "
        f"{kept} of {len(ones)} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", nargs="+", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-row-weights")
    parser.add_argument("--with-documents", action="store_true")
    args = parser.parse_args()
    apply_offline_env()
    encoder = load_encoder(None)
    results: dict[str, Any] = {}
    models = args.out / "models"
    for key, (folder, model, kind) in keyed_runs(args.samples):
        results[key] = evaluate(folder, model, kind, encoder, models, args.with_documents)
    write_results(args.out, results, table(results))


def keyed_runs(samples: list[Path]) -> Iterator[tuple[str, tuple[Path, str, str]]]:
    """Every run of the samples with its key in the tables ("sample / dataset / model /
    kind"), said as it starts."""
    for sample in samples:
        for folder, model, kind in runs(sample):
            key = f"{sample.name} / {folder.name} / {model} / {kind}"
            print(key, flush=True)
            yield key, (folder, model, kind)


def write_results(out: Path, results: dict[str, Any], text: str) -> None:
    """Print the table; write it and the results to out/results.md and results.json."""
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
