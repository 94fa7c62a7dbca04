"""localgen's own cost: `localgen generate` against raw `vllm.LLM.chat`, one engine, one run.

Both sides send the same planned requests of the support-tickets example (same prompts,
sampling settings, per-request seeds and row grammar) to the same in-process vLLM
engine on the built-in model. Before measuring, one request per label compiles each
label's grammar (vLLM caches compiled grammars, so whichever side ran first would
otherwise pay for the compiles). The prefix cache is reset before each measurement, and
the order alternates between rounds (raw then localgen, localgen then raw), so neither
side always gets the warmer or quieter moment of this shared machine. For localgen, the
time spent outside the engine (planning and rendering prompts, validation, building
rows, writing shards and the output table) is measured as the wall time minus the time
spent waiting on the engine.
Prints a Markdown table. Run: make bench-overhead
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from localgen.offline import apply_offline_env

ROOT = Path(__file__).resolve().parent.parent
TASK = ROOT / "examples" / "support-tickets" / "task.toml"


class TimedEngine:
    """Wraps an engine and adds up the time spent inside it."""

    def __init__(self, engine: object) -> None:
        self.inner = engine
        self.name = engine.name  # type: ignore[attr-defined]
        self.backend = engine.backend  # type: ignore[attr-defined]
        self.seconds = 0.0

    def generate(self, requests: Sequence[object]) -> Iterator[object]:
        iterator = self.inner.generate(requests)  # type: ignore[attr-defined]
        while True:
            start = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                self.seconds += time.perf_counter() - start
                return
            self.seconds += time.perf_counter() - start
            yield item

    def close(self) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=16, help="rows per label (4 labels)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    apply_offline_env()

    from localgen.config import EngineSettings, GenerateConfig
    from localgen.engines.loader import load_engine
    from localgen.generation.generate import generate
    from localgen.models.resolve import builtin_model
    from localgen.planning.plan import PlanSpec, build_plan
    from localgen.planning.task import load_task

    model = builtin_model()
    engine = load_engine(EngineSettings(name="vllm", max_model_len=1024), model)
    llm = engine.llm  # type: ignore[attr-defined]
    plan = build_plan(load_task(TASK), PlanSpec(count=args.count, strategy="zero-shot"))
    chats = [[{"role": "user", "content": r.prompt}] for r in plan.requests]
    params = [engine.sampling_params(r) for r in plan.requests]  # type: ignore[attr-defined]
    rows = len(plan.requests)
    results: dict[str, list[tuple[float, int, float]]] = {"raw": [], "localgen": []}
    work = Path(tempfile.mkdtemp(prefix="localgen-overhead-"))
    first_of_each_label = {r.label: i for i, r in reversed(list(enumerate(plan.requests)))}
    warm = sorted(first_of_each_label.values())
    llm.chat([chats[i] for i in warm], [params[i] for i in warm], use_tqdm=False)

    def run_raw() -> None:
        llm.reset_prefix_cache()
        start = time.perf_counter()
        outs = llm.chat(chats, params, use_tqdm=False)
        wall = time.perf_counter() - start
        tokens = sum(len(o.outputs[0].token_ids) for o in outs)
        results["raw"].append((wall, tokens, 0.0))

    def run_localgen(round_: int) -> None:
        llm.reset_prefix_cache()
        timed = TimedEngine(engine)
        config = GenerateConfig(
            task_path=TASK,
            out=work / f"run{round_}",
            count=args.count,
            strategy=("zero-shot",),
            quiet=True,
        )
        start = time.perf_counter()
        result = generate(config, engine=timed, model=model)  # type: ignore[arg-type]
        wall = time.perf_counter() - start
        assert result.written == rows, result.failures
        tokens = result.manifest["tokens"]["completion"]
        results["localgen"].append((wall, tokens, wall - timed.seconds))

    try:
        for round_ in range(args.rounds):
            if round_ % 2 == 0:
                run_raw()
                run_localgen(round_)
            else:
                run_localgen(round_)
                run_raw()
            print(
                f"round {round_ + 1}: raw {results['raw'][-1][0]:.1f} s, "
                f"localgen {results['localgen'][-1][0]:.1f} s",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
        engine.close()

    print(
        f"\n{rows} rows of the example task, zero-shot, row grammar (xgrammar), "
        f"{args.rounds} rounds, order alternating, grammars compiled before timing\n"
    )
    print("| path | wall s (mean) | rows/s | output tokens/s | outside the engine s |")
    print("|---|---|---|---|---|")
    means = {}
    for name, runs in results.items():
        wall = sum(r[0] for r in runs) / len(runs)
        tokens = sum(r[1] for r in runs) / len(runs)
        outside = sum(r[2] for r in runs) / len(runs)
        means[name] = wall
        print(f"| {name} | {wall:.2f} | {rows / wall:.2f} | {tokens / wall:.1f} | {outside:.2f} |")
    print(f"\nlocalgen / raw wall time: {means['localgen'] / means['raw']:.3f}")


if __name__ == "__main__":
    main()
