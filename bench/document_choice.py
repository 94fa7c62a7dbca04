"""Which labelled documents to train on: the choice rules compared on the same labels.

Reads the label folders bench/unlabeled.py made (no model is asked again) and trains the
frozen all-MiniLM-L6-v2 + logistic-regression head on the 8 real rows per label plus the
documents each rule chooses, at weight 1:
- `label`'s choice with a cap per label (`--per-label` 32, 64, 128, 256) and without one
  (every document the model and the few-shot classifier agree on: the default);
- every agreed document, each weighted by its combined confidence;
- self-training: the real-only classifier's 64 most confident documents per predicted
  label (no LLM);
- two bounds that use the true labels: every agreed document with its true label (what
  perfect labels of the same documents would give), and every document with its true
  label.
Each is scored on the real test rows: the paired difference in macro-F1 to real only with
its 95% bootstrap interval, the number of documents and the share whose label is right.

Run: python bench/document_choice.py runs/bench-unlabeled-2000-qwen qwen-0.5b
(the folder and the label folder's name; writes document-choice-MODEL.md there).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl

from localgen.classify.evaluation import paired_difference
from localgen.classify.train import load_encoder
from localgen.documents.choose import choose
from localgen.offline import apply_offline_env
from localgen.vectors.encoder import cache_file, encode_cached
from localgen.vectors.linear import fit_linear

DATASETS = ("sms-spam", "trec", "bbc-news")
CAPS = (32, 64, 128, 256)
SELF_TRAINING = 64


def compare(folder: Path, model: str, encoder: object) -> list[tuple[str, dict[str, float]]]:
    """Every rule's line for one dataset folder."""
    labelled = pl.read_parquet(folder / model / "labeled.parquet")
    known = dict(pl.read_csv(folder / "truth.csv").select("text", "label").iter_rows())
    truth_of = [known[t] for t in labelled["text"]]
    real, test = pl.read_csv(folder / "real.csv"), pl.read_csv(folder / "test.csv")
    names = tuple(sorted(set(real["label"])))
    real_vectors = encoder.encode(real["text"].to_list())  # type: ignore[attr-defined]
    test_ids = [f"test-{i}" for i in range(test.height)]
    test_vectors = encode_cached(
        encoder, test_ids, test["text"].to_list(), folder / f".test-vectors-{model}.npy"
    )
    documents = encode_cached(
        encoder,
        labelled["id"].to_list(),
        labelled["text"].to_list(),
        cache_file(folder / model, encoder),
    )
    truth = test["label"].to_list()
    base = fit_linear(real_vectors, real["label"].to_list(), names)
    base_predicted = base.predict(test_vectors)

    def line(rows: np.ndarray, labels: list[str], factors: np.ndarray | None = None) -> dict:
        vectors = np.vstack([real_vectors, documents[rows]])
        every = real["label"].to_list() + [labels[i] for i in rows]
        weights = None if factors is None else np.concatenate([np.ones(real.height), factors])
        head = fit_linear(vectors, every, names, factors=weights)
        diff = paired_difference(truth, base_predicted, head.predict(test_vectors))
        right = np.mean([labels[i] == truth_of[i] for i in rows]) if len(rows) else 0.0
        return {
            "difference": diff["macro_f1_difference"],
            "low": diff["ci"][0],
            "high": diff["ci"][1],
            "documents": len(rows),
            "right": float(right),
        }

    lines = []
    stored = labelled.drop("classifier_label", "agree", "confidence", "rank", "chosen")
    for cap in (*CAPS, None):
        chosen = choose(stored, names, cap)
        rows = np.flatnonzero(chosen["chosen"].to_numpy())
        key = f"agreed, {cap} per label at most" if cap else "every agreed document (default)"
        lines.append((key, line(rows, chosen["label"].to_list())))
    every = choose(stored, names, None)
    rows = np.flatnonzero(every["chosen"].to_numpy())
    confidence = every["confidence"].to_numpy()[rows]
    lines.append(
        ("every agreed, weighted by confidence", line(rows, every["label"].to_list(), confidence))
    )
    proba = base.proba(documents)
    predicted = [names[i] for i in proba.argmax(axis=1)]
    order = np.argsort(-proba.max(axis=1), kind="stable")
    taken: dict[str, int] = {}
    own = []
    for i in order:
        if taken.get(predicted[i], 0) < SELF_TRAINING:
            own.append(i)
            taken[predicted[i]] = taken.get(predicted[i], 0) + 1
    lines.append(("self-training, 64 per label", line(np.array(sorted(own)), predicted)))
    lines.append(("bound: every agreed, true labels", line(rows, truth_of)))
    lines.append(("bound: every document, true labels", line(np.arange(labelled.height), truth_of)))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="bench/unlabeled.py's --out folder")
    parser.add_argument("model", help="the label folder's name in each dataset: builtin, qwen-0.5b")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    args = parser.parse_args()
    apply_offline_env()
    encoder = load_encoder(None)
    table = [
        "| dataset | documents chosen by | vs real only (paired) | documents | labels right |",
        "|---|---|---|---|---|",
    ]
    for name in args.datasets:
        for key, got in compare(args.out / name, args.model, encoder):
            row = (
                f"| {name} | {key} | {got['difference']:+.3f} [{got['low']:+.3f}, "
                f"{got['high']:+.3f}] | {got['documents']} | {got['right']:.3f} |"
            )
            table.append(row)
            print(row, flush=True)
    (args.out / f"document-choice-{args.model}.md").write_text("\n".join(table) + "\n")


if __name__ == "__main__":
    sys.exit(main())
