"""vLLM's constrained-decoding backends on the project's row schemas: xgrammar, guidance,
outlines.

For each backend, one vLLM engine on the built-in model, then for each example task
(support tickets: 4 labels, 35 words; legal clauses: 6 labels, 60 words) the same planned
zero-shot requests. The first batch is one request per label, so its wall time includes
compiling every label's grammar; the main batch is `--count` rows per label, timed for
output tokens/s and the share of outputs that parse as valid rows of their schema.
Prints a Markdown table and writes it to runs/bench-backends/results.md.
Run: make bench-backends
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

from localgen.offline import apply_offline_env

ROOT = Path(__file__).resolve().parent.parent
TASKS = {
    "support-tickets": ROOT / "examples" / "support-tickets" / "task.toml",
    "legal-clauses": ROOT / "examples" / "legal-clauses" / "task.toml",
}
BACKENDS = ("xgrammar", "guidance", "outlines")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=6, help="rows per label, main batch")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS))
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-backends")
    args = parser.parse_args()
    apply_offline_env()

    from localgen.config import EngineSettings
    from localgen.engines.loader import load_engine
    from localgen.models.resolve import builtin_model
    from localgen.planning.plan import PlanSpec, build_plan
    from localgen.planning.task import load_task

    model = builtin_model()
    rows = []
    for backend in args.backends:
        start = time.perf_counter()
        engine = load_engine(
            EngineSettings(name="vllm", backend=backend, max_model_len=1024), model
        )
        started: float | None = time.perf_counter() - start
        for task_name, path in TASKS.items():
            task = load_task(path)
            first = build_plan(task, PlanSpec(count=1, strategy="zero-shot", seed=1)).requests
            main_batch = build_plan(task, PlanSpec(count=args.count, strategy="zero-shot")).requests
            t0 = time.perf_counter()
            list(engine.generate(first))
            first_wall = time.perf_counter() - t0
            t0 = time.perf_counter()
            completions = list(engine.generate(main_batch))
            wall = time.perf_counter() - t0
            by_key = {r.key: r for r in main_batch}
            valid = sum(by_key[c.key].schema.parse(c.text)[0] is not None for c in completions)
            tokens = sum(c.completion_tokens for c in completions)
            rows.append(
                (backend, task_name, len(task.labels), started, first_wall, wall, tokens, valid)
                + (len(completions),)
            )
            print(
                f"{backend} {task_name}: first batch {first_wall:.1f} s, "
                f"{tokens / wall:.1f} tok/s, {valid}/{len(completions)} valid",
                flush=True,
            )
            started = None  # engine start-up counted once, on the first task
        engine.close()
        del engine
        gc.collect()

    lines = [
        "| backend | task | engine start s | first batch s (1 row per label, compiles) "
        "| main batch s | output tokens | tokens/s | valid rows |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for backend, task_name, labels, started, first_s, wall, tokens, valid, n in rows:
        start_s = "-" if started is None else f"{started:.1f}"
        lines.append(
            f"| {backend} | {task_name} ({labels} labels) | {start_s} | {first_s:.1f} "
            f"| {wall:.1f} | {tokens} | {tokens / wall:.1f} | {valid}/{n} |"
        )
    table = "\n".join(lines)
    print("\n" + table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
