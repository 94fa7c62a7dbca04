"""Which classifier at a few real rows per label: frozen head, fine-tune or SetFit?

The datasets, splits and samples of `bench/real_data.py` (SMS spam, TREC-6, BBC News; 8
and 32 real rows per label; the same 20% test rows). Stage `real`: each method of
`localgen train --method` on the real rows only. Stage `synthetic`: the same with the
rows `bench/real_data.py` generated (`<model>-<N>` run folders; 24 rows per label,
few-shot), curated with localgen's defaults, at the default synthetic weight (auto), or
the one `--synthetic-weight` gives.

Each training is `localgen train` in its own process, so its wall time and peak memory
(the child's maximum resident set) are its own; the models are then scored in this
process on the test rows: macro-F1 with a 95% bootstrap interval, and paired
differences (the same bootstrap resamples of the test rows) against the frozen head on
the same rows and, for synthetic, against the same method on real rows only.

Writes runs/bench-real-data/classifiers.md and classifiers.json. Run:
  .venv/bin/python bench/classifiers.py               # both stages, about 40 min on 2 CPUs
  .venv/bin/python bench/classifiers.py --stage real  # about 15 min; no generation needed
The synthetic stage uses the run folders of `make bench-real-data` (skipped where absent).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
from real_data import DATASETS, ROOT, ci, prepare

from localgen.classify.classifier import TextClassifier
from localgen.classify.evaluation import paired_difference, score
from localgen.config import METHODS, CurateConfig
from localgen.curation.curate import curate
from localgen.generation.store import RunFolder
from localgen.offline import apply_offline_env

LOCALGEN = [sys.executable, "-m", "localgen"]


def train_timed(arguments: list[str]) -> dict[str, Any]:
    """`localgen train ARGUMENTS` in a child process: its seconds and peak memory (MiB,
    from /usr/bin/time: a child forked from this process would count this process's
    pages too)."""
    timer = ["/usr/bin/time", "-f", "peak-kib %M"] if Path("/usr/bin/time").exists() else []
    t0 = time.monotonic()
    done = subprocess.run(
        [*timer, *LOCALGEN, "train", "--quiet", *arguments],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seconds = time.monotonic() - t0
    if done.returncode != 0:
        raise SystemExit(f"localgen train {' '.join(arguments)} failed:\n{done.stderr}")
    peaks = [line.split()[1] for line in done.stderr.splitlines() if line.startswith("peak-kib")]
    peak = round(int(peaks[-1]) / 1024) if peaks else None
    return {"seconds": round(seconds, 1), "peak_mib": peak}


def evaluated(model_dir: Path, test: pl.DataFrame) -> tuple[list[str], dict[str, Any]]:
    model = TextClassifier.load(model_dir)
    predicted = model.predict(test["text"].to_list())
    return predicted, score(test["label"].to_list(), predicted)


def one(
    folder: Path,
    name: str,
    method: str,
    arguments: list[str],
    test: pl.DataFrame,
) -> tuple[list[str], dict[str, Any]]:
    out = folder / "classifiers" / f"{name}-{method}"
    cost = train_timed([*arguments, "--method", method, "--out", str(out)])
    predicted, scores = evaluated(out, test)
    meta = json.loads((out / "model.json").read_text())
    mix = meta["training"].get("synthetic_weight")
    entry = scores | cost | {"synthetic_weight": None if mix is None else mix["chosen"]}
    print(
        f"  {folder.name} {name} {method}: macro-F1 {ci(entry['macro_f1'])} "
        f"({cost['seconds']} s, {cost['peak_mib']} MiB)",
        flush=True,
    )
    return predicted, entry


def setting(
    folder: Path,
    size: int,
    methods: list[str],
    source: str,
    run_dir: Path | None,
    weight: str = "auto",
) -> dict[str, Any]:
    """Every method on one training set; differences against the frozen head on it and,
    with synthetic rows, against the same method on the real rows alone."""
    test = pl.read_csv(folder / "test.csv")
    truth = test["label"].to_list()
    arguments = ["--real", str(folder / f"train-{size}.csv")]
    name = f"real-{size}"
    if run_dir is not None:
        arguments += ["--synthetic", str(run_dir), "--rows", "curated"]
        arguments += ["--synthetic-weight", weight]
        name = run_dir.name + ("" if weight == "auto" else f"-w{weight}")
    predictions: dict[str, list[str]] = {}
    out: dict[str, Any] = {}
    for method in methods:
        predictions[method], out[method] = one(folder, name, method, arguments, test)
        if method != "frozen" and "frozen" in predictions:
            out[method]["minus_frozen"] = paired_difference(
                truth, predictions["frozen"], predictions[method]
            )
        real_dir = folder / "classifiers" / f"real-{size}-{method}"
        if run_dir is not None and (real_dir / "model.json").is_file():
            real_only, _ = evaluated(real_dir, test)
            out[method]["minus_real_only"] = paired_difference(
                truth, real_only, predictions[method]
            )
    return {"source": source, "size": size, "weight": weight, "methods": out}


def _diff(entry: dict[str, Any] | None) -> str:
    if not entry:
        return ""
    low, high = entry["ci"]
    mark = " ▲" if low > 0 else (" ▼" if high < 0 else "")
    return f"{entry['macro_f1_difference']:+.3f} [{low:+.3f}, {high:+.3f}]{mark}"


def table(results: dict[str, Any]) -> str:
    lines = [
        "| dataset | real/label | rows | method | macro-F1 [95% CI] | minus frozen "
        "| minus same method, real only | train s | peak MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset, settings in results.items():
        for key, entry in settings.items():
            size = entry.get("size", key.rsplit("-", 1)[-1])
            for method, e in entry["methods"].items():
                lines.append(
                    f"| {dataset} | {size} | {entry['source']} | {method} | {ci(e['macro_f1'])} "
                    f"| {_diff(e.get('minus_frozen'))} | {_diff(e.get('minus_real_only'))} "
                    f"| {e['seconds']} | {e['peak_mib']} |"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-real-data")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--models", nargs="+", default=["builtin", "qwen-0.5b"])
    parser.add_argument("--stage", choices=["all", "real", "synthetic"], default="all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--synthetic-weight", default="auto", help="of the synthetic rows (default: auto)"
    )
    args = parser.parse_args()
    apply_offline_env()
    saved = args.out / "classifiers.json"
    results: dict[str, Any] = json.loads(saved.read_text()) if saved.is_file() else {}
    started = time.monotonic()
    for dataset in args.datasets:
        folder = prepare(dataset, args.out, args.sizes, args.seed)
        entry = results.setdefault(dataset, {})
        for size in args.sizes:
            if args.stage in ("all", "real"):
                entry[f"real-{size}"] = setting(folder, size, args.methods, "real", None)
            if args.stage in ("all", "synthetic"):
                for model in args.models:
                    run_dir = folder / f"{model}-{size}"
                    if not RunFolder(run_dir).output_table.is_file():
                        print(f"  {run_dir}: not generated (make bench-real-data); skipped")
                        continue
                    curate(
                        CurateConfig(
                            run_dir, real=folder / f"train-{size}.csv", eval=folder / "test.csv"
                        )
                    )
                    weight = args.synthetic_weight
                    source = f"real + {model} synthetic" + (
                        "" if weight == "auto" else f", weight {weight}"
                    )
                    key = f"{model}-{size}" + ("" if weight == "auto" else f"-w{weight}")
                    entry[key] = setting(folder, size, args.methods, source, run_dir, weight)
            saved.write_text(json.dumps(results, indent=2) + "\n")
    text = table(results)
    print(text)
    (args.out / "classifiers.md").write_text(text + "\n")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"done in {time.monotonic() - started:.0f} s (this process peaked at {peak:.0f} MiB)")


if __name__ == "__main__":
    main()
