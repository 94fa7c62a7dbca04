"""Label definitions the model writes: do they add to the task file's label descriptions?

The task file's description of each label already joins training as one row of its label
(`--descriptions-weight`, 4 by default; bench/descriptions.py). This asks the generating
model for DEFINITIONS short definitions of each label, from the task's context and the
label's description (PROMPT: "a one-sentence definition of the category for a
glossary"), constrained to a row of that label, sampled at the task's temperature. They
depend on the task file and the model, not on the real rows, so one set per dataset and
model serves every real sample.

Scored on the real rows bench/rewrite.py prepared (runs/bench-rewrite/<seed>/<dataset>/:
its split, balanced = 8 real rows per label, rare = 2 of the rare label and 32 of each
other), with the frozen all-MiniLM-L6-v2 + logistic-regression classifier:
- descriptions: real + the descriptions at 4 (`run`'s default today);
- definitions 1, definitions 4: the same + the model's definitions, each at factor 1 or 4.
Each paired with `descriptions` on the same test rows (macro-F1, 95% bootstrap interval).

Stated before any definition was generated or scored: the definitions join `run`'s
defaults if, for each model, the factor with the larger sum of differences on seed 0
(balanced and rare, 3 datasets: 6 runs) loses on none of seeds 1-4's 24 runs (interval
below 0) and its sum of differences there is above 0; otherwise they stay out, and are
not built into the product. Outcome: factor 1 on seed 0 for both models; on seeds 1-4 the
0.5B model's passed (7 gains, 0 losses, +0.303) and the built-in model's failed (9 gains,
4 losses: SMS spam, balanced, every seed), so they stay out.

Writes runs/bench-definitions/definitions-<model>.json and results.md.
Run: python bench/definitions.py --models qwen-0.5b builtin (a few minutes per model).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import jinja2
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from descriptions import descriptions  # noqa: E402
from real_data import DATASETS, TASKS, _engine  # noqa: E402

from localgen.classify.evaluation import paired_difference, score  # noqa: E402
from localgen.classify.train import fit, load_encoder, training_set  # noqa: E402
from localgen.config import TrainSettings  # noqa: E402
from localgen.data import read_labeled  # noqa: E402
from localgen.offline import apply_offline_env  # noqa: E402
from localgen.planning.requests import Request, request_seeds  # noqa: E402
from localgen.planning.schema import RowSchema  # noqa: E402
from localgen.planning.task import load_task  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFINITIONS = 4  # per label
MAX_CHARS = 300
PROMPT = jinja2.Template(
    """{{ context }}

Category "{{ label }}": {{ description }}

Write a one-sentence definition of the category "{{ label }}" for a glossary: what the \
texts in it are about, in general terms, without quoting an example. Use at most 40 words.
Reply as JSON: {"text": "...", "label": "{{ label }}"}"""
)
FACTORS = (1.0, 4.0)
SEEDS = (0, 1, 2, 3, 4)


def write_definitions(args: argparse.Namespace, model_name: str) -> None:
    """DEFINITIONS definitions of every label of every dataset, with one engine."""
    with _engine(args, model_name) as (_, engine):
        out: dict[str, dict[str, list[str]]] = {}
        for name in args.datasets:
            task = load_task(TASKS / f"{name}.toml")
            requests = []
            for n, (label, spec) in enumerate(task.labels.items()):
                prompt = PROMPT.render(
                    context=task.context, label=label, description=spec.description
                )
                for k, seed in enumerate(request_seeds(args.seed, n * DEFINITIONS, DEFINITIONS)):
                    requests.append(
                        Request(
                            key=f"{label}-{k}",
                            label=label,
                            strategy="definition",
                            template="definition",
                            template_hash="-",
                            prompt=prompt,
                            schema=RowSchema(label, MAX_CHARS),
                            temperature=task.generation.temperature,
                            top_p=task.generation.top_p,
                            seed=seed,
                        )
                    )
            schemas = {r.key: r.schema for r in requests}
            texts: dict[str, list[str]] = {label: [] for label in task.labels}
            for completion in engine.generate(requests):
                row, why = schemas[completion.key].parse(completion.text)
                if row is None:
                    print(f"  {name} {completion.key}: {why}", flush=True)
                    continue
                texts[row["label"]].append(row["text"])
            out[name] = texts
            for label, written in texts.items():
                print(f"  {name} / {label}: {written[0] if written else '(none)'}", flush=True)
    path = args.root / f"definitions-{model_name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def evaluate(args: argparse.Namespace, encoder: Any) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for model_name in args.models:
        written = json.loads((args.root / f"definitions-{model_name}.json").read_text())
        for seed in args.seeds:
            for name in args.datasets:
                folder = args.rows / str(seed) / name
                test = pl.read_csv(folder / "test.csv")
                truth = test["label"].to_list()
                vectors = encoder.encode(test["text"].to_list())
                rows = [
                    {"id": f"definition-{label}-{k}", "text": text, "label": label}
                    for label, texts in written[name].items()
                    for k, text in enumerate(texts)
                ]
                definitions = pl.DataFrame(rows)
                for setting in ("balanced", "rare"):
                    real = read_labeled(folder / setting / "real.csv")
                    described = descriptions(name)
                    out = args.root / "models" / f"{model_name}-{seed}-{name}-{setting}"
                    base = training_set(encoder, real, None, descriptions=described)
                    guess = fit(base, TrainSettings(), out / "descriptions").head.predict(vectors)
                    got: dict[str, Any] = {"descriptions": score(truth, guess)}
                    both = training_set(
                        encoder, real, None, documents=definitions, descriptions=described
                    )
                    for factor in FACTORS:
                        settings = TrainSettings(documents_weight=factor)
                        line = f"definitions {factor:g}"
                        other = fit(both, settings, out / line).head.predict(vectors)
                        got[line] = score(truth, other) | {
                            "vs descriptions": paired_difference(truth, guess, other)
                        }
                    key = f"{model_name} / {seed} / {setting} / {name}"
                    print(key, flush=True)
                    results[key] = got
    return results


def _shown(diff: dict[str, Any]) -> str:
    low, high = diff["ci"]
    return f"{diff['macro_f1_difference']:+.3f} [{low:+.3f}, {high:+.3f}]"


def table(results: dict[str, Any]) -> str:
    lines = [f"definitions per label: {DEFINITIONS}", ""]
    lines += [
        "| model / seed / setting / dataset | descriptions | "
        + " | ".join(f"definitions {f:g} vs descriptions" for f in FACTORS)
        + " |",
        "|---" * (2 + len(FACTORS)) + "|",
    ]
    for key, got in results.items():
        cells = [_shown(got[f"definitions {f:g}"]["vs descriptions"]) for f in FACTORS]
        base = got["descriptions"]["macro_f1"]["value"]
        lines.append(f"| {key} | {base:.3f} | {' | '.join(cells)} |")
    lines += ["", "| model / seeds | line | runs | gains | losses | sum of differences |"]
    lines.append("|---|---|---|---|---|---|")
    for model_name in sorted({k.split(" / ")[0] for k in results}):
        for seeds, label in (((0,), "0"), ((1, 2, 3, 4), "1-4")):
            for factor in FACTORS:
                diffs = [
                    got[f"definitions {factor:g}"]["vs descriptions"]
                    for key, got in results.items()
                    if key.startswith(f"{model_name} / ") and int(key.split(" / ")[1]) in seeds
                ]
                if not diffs:
                    continue
                gains = sum(d["ci"][0] > 0 for d in diffs)
                losses = sum(d["ci"][1] < 0 for d in diffs)
                total = sum(d["macro_f1_difference"] for d in diffs)
                lines.append(
                    f"| {model_name} / {label} | definitions {factor:g} | {len(diffs)} | "
                    f"{gains} | {losses} | {total:+.3f} |"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["builtin"])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--seed", type=int, default=0, help="the definitions' sampling seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--root", type=Path, default=ROOT / "runs" / "bench-definitions")
    parser.add_argument(
        "--rows", type=Path, default=ROOT / "runs" / "bench-rewrite", help="bench/rewrite.py's"
    )
    parser.add_argument("--stage", choices=["all", "generate", "evaluate"], default="all")
    args = parser.parse_args()
    apply_offline_env()
    if args.stage in ("all", "generate"):
        for model_name in args.models:
            print(f"definitions by {model_name}", flush=True)
            write_definitions(args, model_name)
    if args.stage == "generate":
        return
    encoder = load_encoder(None)
    results = evaluate(args, encoder)
    text = table(results)
    (args.root / "results.md").write_text(text + "\n", encoding="utf-8")
    (args.root / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
