"""vLLM + structured outputs against transformers + Outlines, on the same requests.

Both of localgen's engines get the same planned requests of the support-tickets example
(zero-shot, same prompts, sampling settings, seeds and JSON schema per label) on the
built-in model, one engine after the other in one process. For each: wall time of the
whole batch, output tokens/s, and how many outputs are valid rows. Engine start-up, and a
first batch of one request per label (each label's grammar compiled, the kernels warmed;
vLLM's prefix cache emptied after it), are timed separately. Prints a Markdown table.
Run: make bench-engines
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

from localgen.offline import apply_offline_env

ROOT = Path(__file__).resolve().parent.parent
TASK = ROOT / "examples" / "support-tickets" / "task.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=8, help="rows per label (4 labels)")
    args = parser.parse_args()
    apply_offline_env()

    from localgen.config import EngineSettings
    from localgen.engines.loader import load_engine
    from localgen.models.resolve import builtin_model
    from localgen.planning.plan import PlanSpec, build_plan
    from localgen.planning.task import load_task

    model = builtin_model()
    plan = build_plan(load_task(TASK), PlanSpec(count=args.count, strategy="zero-shot"))
    rows = []
    for name in ("vllm", "transformers"):
        start = time.perf_counter()
        engine = load_engine(EngineSettings(name=name, max_model_len=1024), model)
        started = time.perf_counter() - start
        start = time.perf_counter()
        list(engine.generate(list({r.label: r for r in plan.requests}.values())))
        first = time.perf_counter() - start
        if hasattr(engine, "llm"):  # vLLM: the timed batch's prompts not served from cache
            engine.llm.reset_prefix_cache()
        start = time.perf_counter()
        completions = list(engine.generate(plan.requests))
        wall = time.perf_counter() - start
        by_key = {r.key: r for r in plan.requests}
        valid = sum(by_key[c.key].schema.parse(c.text)[0] is not None for c in completions)
        tokens = sum(c.completion_tokens for c in completions)
        rows.append((name, engine.backend, started, first, wall, tokens, valid, len(completions)))
        print(f"{name}: {wall:.1f} s, {tokens / wall:.1f} tok/s", flush=True)
        engine.close()
        del engine
        gc.collect()

    print(
        f"\n{len(plan.requests)} requests of the example task, zero-shot, one JSON schema "
        "per label\n"
    )
    print(
        "| engine | backend | start s | first batch s | wall s | output tokens | tokens/s "
        "| valid rows |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, backend, started, first, wall, tokens, valid, n in rows:
        print(
            f"| {name} | {backend} | {started:.1f} | {first:.1f} | {wall:.1f} | {tokens} | "
            f"{tokens / wall:.1f} | {valid}/{n} |"
        )
    (*_, w0, t0, _, _), (*_, w1, t1, _, _) = rows
    print(f"\nvLLM / transformers: {(t0 / w0) / (t1 / w1):.1f}x tokens/s, {w1 / w0:.1f}x wall time")


if __name__ == "__main__":
    main()
