"""The label check with the row last (the shared part first, so vLLM's prefix cache computes
it once) against the check as it was (the row in the middle, the question after it): what
it costs in a `generate` run, and whether its answers are as good.

Per model, one in-process vLLM engine (localgen's CPU settings):

1. Cost. The `--count` x 4 zero-shot rows of the support-tickets example are generated
   once (timed: what `generate` spends before its check); then the check of those rows is
   run with each prompt, alternating for `--rounds` rounds, the prefix cache reset before
   each. Reported: the check's seconds, its share of generation + check, the prompt tokens
   vLLM computed (not served from its cache), and how often the two prompts agree.
2. Answers. `--texts` labelled texts per dataset (the example's test tickets; SMS spam,
   TREC-6 and BBC News from the real-data benchmark, sampled evenly over labels, with
   their task files) are checked with each prompt: the share answered with the text's
   true label, a paired 95% interval of the difference (bootstrap over texts), and
   agreement.
Prints Markdown tables. Run: python bench/label_check.py --models builtin qwen-0.5b
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))

from localgen.offline import apply_offline_env  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "support-tickets"
BEFORE = """{{ context }}

The categories:
{% for item in labels -%}
- "{{ item.name }}": {{ item.description }}
{% endfor %}
Text:
  {{ text | indent(2) }}

Which category does the text belong to? Judge the text itself, not what it is meant to be.
Reply as JSON: {"label": "<one of the categories>"}
"""  # prompts/label-check.jinja before the row went last
PROMPTS = ("row in the middle (before)", "row last (now)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["builtin"], help="builtin, qwen-0.5b, ...")
    parser.add_argument("--count", type=int, default=16, help="rows per label (4 labels)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--texts", type=int, default=200, help="labelled texts per dataset")
    args = parser.parse_args()
    apply_offline_env()
    before = Path(tempfile.mkdtemp(prefix="localgen-check-"))
    (before / "label-check.jinja").write_text(BEFORE)
    out = [measure(name, args, before) for name in args.models]
    print("\n\n".join(out))


def texts(per_dataset: int) -> dict[str, tuple[Path, list[tuple[str, str]]]]:
    """(task file, [(text, true label)]) per dataset."""
    from real_data import DATASETS, TASKS, clean

    tickets = pl.read_csv(EXAMPLE / "test.csv")
    found = {"support-tickets": (EXAMPLE / "task.toml", list(tickets.iter_rows())[:per_dataset])}
    for name, load in DATASETS.items():
        frame = clean(load())
        labels = sorted(frame["label"].unique())
        rng = random.Random(0)
        rows: list[tuple[str, str]] = []
        for label in labels:
            own = frame.filter(pl.col("label") == label)["text"].to_list()
            rows += [(t, label) for t in rng.sample(own, min(per_dataset // len(labels), len(own)))]
        found[name] = (TASKS / f"{name}.toml", rows)
    return found


def check(
    engine: Any, task: Any, library: Any, rows: list[tuple[str, str]]
) -> tuple[float, list[str | None], int]:
    """The check of `rows` ((text, label)) with one prompt library: seconds, answers, and the
    prompt tokens vLLM computed."""
    from localgen.planning.check import LabelCheck

    asker = LabelCheck(task, library)
    requests = [asker.request(f"r{i}", text, label, i) for i, (text, label) in enumerate(rows)]
    by_key = {r.key: r for r in requests}
    engine.llm.reset_prefix_cache()
    start = time.perf_counter()
    answers: dict[str, str | None] = {}
    computed = 0
    for c in engine.generate(requests):
        parsed, _ = by_key[c.key].schema.parse(c.text)
        answers[c.key] = parsed and parsed["label"]
        computed += c.prompt_tokens - (c.cached_tokens or 0)
    return time.perf_counter() - start, [answers[r.key] for r in requests], computed


def paired(a: list[bool], b: list[bool]) -> str:
    diff = np.array(b, dtype=float) - np.array(a, dtype=float)
    rng = np.random.default_rng(0)
    means = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(2000)]
    low, high = np.percentile(means, [2.5, 97.5])
    return f"{diff.mean():+.3f} [{low:+.3f}, {high:+.3f}]"


def measure(name: str, args: Any, before: Path) -> str:
    from localgen.config import EngineSettings
    from localgen.engines.loader import load_engine
    from localgen.models.resolve import resolve_model
    from localgen.planning.plan import PlanSpec, build_plan
    from localgen.planning.prompts import PromptLibrary
    from localgen.planning.task import load_task

    libraries = dict(zip(PROMPTS, (PromptLibrary(before), PromptLibrary()), strict=True))
    model = resolve_model(None if name == "builtin" else name)
    engine = load_engine(EngineSettings(name="vllm"), model)
    task = load_task(EXAMPLE / "task.toml")
    plan = build_plan(task, PlanSpec(count=args.count, strategy="zero-shot"))
    by_key = {r.key: r for r in plan.requests}
    list(engine.generate(list({r.label: r for r in plan.requests}.values())))  # compile
    engine.llm.reset_prefix_cache()
    start = time.perf_counter()
    completions = list(engine.generate(plan.requests))
    generation_s = time.perf_counter() - start
    rows = []
    for c in completions:
        row, _ = by_key[c.key].schema.parse(c.text)
        if row is not None:
            rows.append((row["text"], row["label"]))
    check(engine, task, libraries[PROMPTS[1]], rows[:4])  # the check's grammars compiled

    seconds = {p: 0.0 for p in PROMPTS}
    computed = {p: 0 for p in PROMPTS}
    answers: dict[str, list[str | None]] = {}
    for round_ in range(args.rounds):
        for prompt in PROMPTS if round_ % 2 == 0 else PROMPTS[::-1]:
            s, answers[prompt], tokens = check(engine, task, libraries[prompt], rows)
            seconds[prompt] += s / args.rounds
            computed[prompt] = tokens
            print(f"{name} round {round_ + 1} {prompt}: check {s:.1f} s", flush=True)
    lines = [
        f"### {name}: the check of {len(rows)} generated rows (generation {generation_s:.1f} s), "
        f"mean of {args.rounds} rounds\n",
        "| prompt | check s | share of generation + check | prompt tokens computed "
        "| answers = the row's label |",
        "|---|---|---|---|---|",
    ]
    for prompt in PROMPTS:
        same = sum(a == label for a, (_, label) in zip(answers[prompt], rows, strict=True))
        lines.append(
            f"| {prompt} | {seconds[prompt]:.1f} | "
            f"{seconds[prompt] / (generation_s + seconds[prompt]):.1%} | {computed[prompt]} "
            f"| {same}/{len(rows)} |"
        )
    agree = sum(a == b for a, b in zip(*answers.values(), strict=True))
    lines.append(f"\nThe two prompts gave the same answer for {agree}/{len(rows)} rows.\n")

    lines += [
        f"### {name}: answers on labelled real texts\n",
        "| dataset | texts | right, before | right, now | now - before | same answer |",
        "|---|---|---|---|---|---|",
    ]
    for dataset, (task_path, labelled) in texts(args.texts).items():
        data_task = load_task(task_path)
        right = {}
        got = {}
        for prompt in PROMPTS:
            _, got[prompt], _ = check(engine, data_task, libraries[prompt], labelled)
            right[prompt] = [
                a == label for a, (_, label) in zip(got[prompt], labelled, strict=True)
            ]
        agree = sum(a == b for a, b in zip(*got.values(), strict=True))
        lines.append(
            f"| {dataset} | {len(labelled)} | {np.mean(right[PROMPTS[0]]):.3f} "
            f"| {np.mean(right[PROMPTS[1]]):.3f} | {paired(right[PROMPTS[0]], right[PROMPTS[1]])} "
            f"| {agree}/{len(labelled)} |"
        )
        print(lines[-1], flush=True)
    engine.close()
    table = "\n".join(lines)
    print(table, flush=True)
    return table


if __name__ == "__main__":
    main()
