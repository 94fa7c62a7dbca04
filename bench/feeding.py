"""Feeding the engine continuously against feeding it in windows, on the real engine.

One in-process vLLM engine on the built-in model; the same zero-shot requests of the
support-tickets example go through `localgen generate` twice per round:

- continuous: at most `--in-flight` K requests held, and a new one taken as each
  finishes (`engines.base.Feed`, what generate does);
- windows: K requests taken, then none until all K are answered (how generate fed the
  engine before: each window's batch drains to empty before the next starts).

Grammars are compiled before timing, the prefix cache is reset before each run, and the
order alternates between rounds. Prints a Markdown table: completion tokens/s of each
and their ratio per round.
Run: .venv/bin/python bench/feeding.py (about 8 minutes; --rows, --in-flight, --rounds)
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from localgen.offline import apply_offline_env

apply_offline_env()
os.environ.update(VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_LOGGING_LEVEL="ERROR")

ROOT = Path(__file__).resolve().parent.parent
TASK = ROOT / "examples" / "support-tickets" / "task.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=256, help="rows per run (4 labels)")
    parser.add_argument("--in-flight", type=int, default=64, help="K: generate's --window")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import localgen.generation.generate as generation
    from localgen.config import EngineSettings, GenerateConfig
    from localgen.engines.base import Feed
    from localgen.engines.loader import load_engine
    from localgen.models.resolve import builtin_model
    from localgen.planning.plan import PlanSpec, build_plan
    from localgen.planning.task import load_task

    class Windows(Feed):
        """The old way: K at a time, the next K once the engine holds none."""

        def room(self, holding: int) -> int | None:
            return self.in_flight if holding == 0 else 0

    model = builtin_model()
    engine: Any = load_engine(EngineSettings(name="vllm", max_model_len=1024), model)
    work = Path(tempfile.mkdtemp(prefix="localgen-feeding-"))
    warm = build_plan(load_task(TASK), PlanSpec(count=1, strategy="zero-shot")).requests
    list(engine.generate(warm))  # compiles each label's grammar before timing

    def run(name: str, feed: type[Feed], n: int) -> float:
        engine.llm.reset_prefix_cache()
        generation.Feed = feed  # type: ignore[misc]
        config = GenerateConfig(
            task_path=TASK,
            out=work / f"{name}-{n}",
            count=args.rows // 4,
            strategy=("zero-shot",),
            window=args.in_flight,
            check_labels=False,
            quiet=True,
        )
        start = time.perf_counter()
        result = generation.generate(config, engine=engine, model=model)
        return result.manifest["tokens"]["completion"] / (time.perf_counter() - start)

    print(f"{args.rows} rows, {args.in_flight} in flight; completion tokens/s\n")
    print("| round | order | continuous | windows | continuous / windows |")
    print("|---|---|---|---|---|")
    try:
        for n in range(args.rounds):
            ways = [("continuous", Feed), ("windows", Windows)]
            if n % 2:
                ways.reverse()
            speed = {name: run(name, feed, n) for name, feed in ways}
            order = " then ".join(name for name, _ in ways)
            print(
                f"| {n + 1} | {order} | {speed['continuous']:.1f} | {speed['windows']:.1f} "
                f"| {speed['continuous'] / speed['windows']:.2f} |",
                flush=True,
            )
    finally:
        generation.Feed = Feed  # type: ignore[misc]
        shutil.rmtree(work, ignore_errors=True)
        engine.close()


if __name__ == "__main__":
    main()
