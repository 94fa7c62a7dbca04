"""The fit margin by the generating model: does weighing each generated row by how well
the model that wrote it reads it as its own label keep the gains of synthetic rows
without their losses?

Stage `score`: for every curated run of the sample folders (as bench/row_weights.py finds
them: `<model>-generated`, few-shot, and `<model>-from-documents`), the generating model
scores each kept row under every label's prompt (`localgen.planning.channel`, one
prompt-only pass per label) and writes `<run>/channel.parquet`: id, label, margin,
posterior, and seconds per 1,000 rows. A run already scored is skipped.

Stage `evaluate`: the frozen all-MiniLM-L6-v2 + logistic-regression classifier on real
only, and on real + the run's rows under each rule, paired with real only on the
dataset's test rows:
- auto, 1, fit: `--synthetic-weight` as it is today (fit: the real-row classifier's
  probability of the row's label);
- channel: each row's factor its posterior (its own label's share of the text's
  probability over all labels' prompts);
- channel x fit: the product of the two;
- margin > 0: factor 1 where the model reads the row as its own label more than any other,
  0 elsewhere;
- auto x channel: each row its posterior, scaled by the factor of 0, 0.1, 0.25, 0.5, 1
  that auto's cross-validation prefers with the rows so weighed (the issue's "auto, which
  now scales the per-row weights").

Stated before the second sample was scored: of channel, channel x fit and margin > 0,
the one with no significant loss on the first sample's runs (runs/bench-unlabeled and
runs/bench-unlabeled-2000-qwen, seed 0) and the largest sum of differences there is the
candidate. It becomes the default of --synthetic-weight (and so `run`'s) if on the second
sample's runs (runs/bench-unlabeled-seed1) it has no significant loss, at least as many
significant gains as auto and a sum of differences at least auto's: the rule `fit` met on
the first sample and failed on the second (docs/measurements.md, "A weight per generated
row").

Result (2026-12-07): `channel` was the candidate (first sample: 4 gains, 0 losses, +0.260
against auto's 0, 0, +0.012) and failed on the second (4 gains, 3 losses on SMS spam,
+0.051 against auto's 2, 0, +0.096), so auto stays. `auto x channel` was added after that
and stated before it was scored on either sample: it becomes the default if on each
sample it has no significant loss, at least as many significant gains as auto and a sum
of differences at least auto's.

Writes runs/bench-fit-margin/results.md and results.json.
Run: python bench/fit_margin.py --samples runs/bench-unlabeled runs/bench-unlabeled-2000-qwen
(the 0.5B model's runs take most of the time: under an hour for both samples).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_data import ci  # noqa: E402
from row_weights import _difference, keyed_runs, runs, tally, write_results  # noqa: E402

from localgen.classify.evaluation import paired_difference, score  # noqa: E402
from localgen.classify.mixing import choose_weight, label_fit  # noqa: E402
from localgen.classify.train import fit, load_encoder, training_set  # noqa: E402
from localgen.config import EngineSettings, TrainSettings  # noqa: E402
from localgen.data import read_labeled  # noqa: E402
from localgen.engines.loader import load_engine  # noqa: E402
from localgen.models.resolve import resolve_model  # noqa: E402
from localgen.offline import apply_offline_env  # noqa: E402
from localgen.planning.channel import ChannelFit  # noqa: E402
from localgen.planning.task import load_task  # noqa: E402
from localgen.vectors.linear import fit_linear  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TASKS = ROOT / "bench" / "tasks"
SCORES = "channel.parquet"
SETTINGS = ("auto", "1", "fit")  # --synthetic-weight as it is
PER_ROW = ("channel", "channel x fit", "margin > 0", "auto x channel")
RULES = SETTINGS + PER_ROW


def score_runs(samples: list[Path]) -> None:
    """channel.parquet for every run not scored yet, one engine per model."""
    todo: dict[str, list[tuple[Path, str]]] = {}
    for sample in samples:
        for folder, model, kind in runs(sample):
            run = folder / f"{model}-{kind}"
            if not (run / SCORES).is_file():
                todo.setdefault(model, []).append((folder, kind))
    for model, items in todo.items():
        ref = resolve_model(None if model == "builtin" else model, print)
        engine = load_engine(EngineSettings(), ref)
        try:
            for folder, kind in items:
                run = folder / f"{model}-{kind}"
                rows = pl.read_parquet(run / "curated.parquet", columns=["id", "text", "label"])
                channel = ChannelFit(load_task(TASKS / f"{folder.name}.toml"))
                t0 = time.monotonic()
                fits = list(
                    channel.score(engine, list(zip(rows["text"], rows["label"], strict=True)))
                )
                seconds = time.monotonic() - t0
                pl.DataFrame(
                    {
                        "id": rows["id"],
                        "label": rows["label"],
                        "margin": [f.margin for f in fits],
                        "posterior": [f.posterior for f in fits],
                    }
                ).write_parquet(run / SCORES)
                per_1000 = 1000 * seconds / max(1, rows.height)
                print(f"{run}: {rows.height} rows in {seconds:.0f} s ({per_1000:.0f} s per 1,000)")
                (run / "channel.json").write_text(
                    json.dumps({"rows": rows.height, "seconds": round(seconds, 1)}) + "\n"
                )
        finally:
            engine.close()


def evaluate(folder: Path, model: str, kind: str, encoder: Any, out: Path) -> dict[str, Any]:
    """Every rule on one run, paired with real only on the dataset's test rows."""
    real = read_labeled(folder / "real.csv")
    test = pl.read_csv(folder / "test.csv")
    truth = test["label"].to_list()
    vectors = encoder.encode(test["text"].to_list())
    run = folder / f"{model}-{kind}"
    settings = TrainSettings()

    def trained(data: Any, s: TrainSettings, name: str) -> tuple[list[str], Any]:
        got = fit(data, s, out / f"{folder.name}-{model}-{kind}-{name}")
        return got.head.predict(vectors), got.info["training"]

    base, _ = trained(training_set(encoder, real, None), settings, "real")
    result: dict[str, Any] = {"real only": score(truth, base)}
    data = training_set(encoder, real, run)
    result["rows"] = data.counts().get("synthetic", {})
    for name in SETTINGS:
        setting: str | float = name if name in ("auto", "fit") else float(name)
        guess, training = trained(data, TrainSettings(synthetic_weight=setting), name)
        result[name] = score(truth, guess) | {
            "vs real only": paired_difference(truth, base, guess),
            "weight": training["synthetic_weight"]["chosen"],
        }
    # The per-row rules: the run's rows in training_set's order (the curated frame's).
    own = [i for i, s in enumerate(data.sources) if s == "synthetic"]
    real_rows = [i for i, s in enumerate(data.sources) if s == "real"]
    frame = pl.read_parquet(run / "curated.parquet", columns=["id"])
    scores = pl.read_parquet(run / SCORES)
    by_id = dict(
        zip(scores["id"], zip(scores["posterior"], scores["margin"], strict=True), strict=True)
    )
    posterior = np.array([by_id[i][0] for i in frame["id"]])
    margin = np.array([by_id[i][1] for i in frame["id"]])
    names = sorted(set(data.labels))
    probability = label_fit(
        data.vectors[real_rows],
        [data.labels[i] for i in real_rows],
        data.vectors[own],
        [data.labels[i] for i in own],
        names,
        settings.c,
        settings.balanced,
    )
    result["channel agrees"] = float((margin > 0).mean())
    own_factors = np.ones(len(data.labels))
    own_factors[own] = posterior
    scaled = choose_weight(
        data.vectors,
        data.labels,
        data.sources,
        names,
        data._ids(),
        settings.c,
        settings.balanced,
        settings.seed,
        row_factors=own_factors,
    )
    for name, weights in (
        ("channel", posterior),
        ("channel x fit", posterior * np.asarray(probability)),
        ("margin > 0", (margin > 0).astype(float)),
        ("auto x channel", scaled.chosen * posterior),
    ):
        factors = np.ones(len(data.labels))
        factors[own] = weights
        head = fit_linear(
            data.vectors, data.labels, names, settings.c, settings.balanced, factors=factors
        )
        guess = head.predict(vectors)
        result[name] = score(truth, guess) | {
            "vs real only": paired_difference(truth, base, guess),
            "weight": round(float(weights.mean()), 3),
        }
    return result


def table(results: dict[str, Any]) -> str:
    lines = [
        "| sample / dataset / model / rows | synthetic rows | margin > 0 | real only | "
        + " | ".join(RULES)
        + " |",
        "|---" * (4 + len(RULES)) + "|",
    ]
    for key, got in results.items():
        cells = [f"{_difference(got[r])} (w {got[r]['weight']:g})" for r in RULES]
        rows = sum(got["rows"].values())
        lines.append(
            f"| {key} | {rows} | {got['channel agrees']:.0%} | {ci(got['real only']['macro_f1'])} "
            f"| {' | '.join(cells)} |"
        )
    for sample in sorted({key.split(" / ")[0] for key in results}):
        entries = [got for key, got in results.items() if key.split(" / ")[0] == sample]
        lines += [
            "",
            f"{sample}:",
            "",
            "| rule | runs | gains (interval > 0) | losses (interval < 0) | sum of "
            "differences | weight 1's gains kept |",
            "|---|---|---|---|---|---|",
        ]
        lines += [tally(entries, rule) for rule in RULES]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", nargs="+", type=Path, required=True)
    parser.add_argument("--stage", choices=("score", "evaluate", "all"), default="all")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-fit-margin")
    args = parser.parse_args()
    apply_offline_env()
    if args.stage in ("score", "all"):
        score_runs(args.samples)
    if args.stage == "score":
        return
    encoder = load_encoder(None)
    results: dict[str, Any] = {}
    for key, (folder, model, kind) in keyed_runs(args.samples):
        results[key] = evaluate(folder, model, kind, encoder, args.out / "models")
    write_results(args.out, results, table(results))


if __name__ == "__main__":
    main()
