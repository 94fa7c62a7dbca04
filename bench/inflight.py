"""Completion tokens/s against the number of requests in flight, and where constrained
generation's time goes.

One in-process vLLM engine on the built-in model. For each size N, the first N planned
zero-shot requests of the support-tickets example (N/4 per label: the same prompts, sampling
settings and seeds, as `generate -n N/4` plans them) go to the engine at once, three ways:

- raw, grammar: `vllm.LLM.chat` with localgen's row grammar (xgrammar);
- raw, free: `vllm.LLM.chat`, no constraint, each request asked for exactly as many tokens
  as it took with the grammar (`ignore_eos`), so both sides decode the same tokens and
  the ratio is the grammar's cost per token;
- localgen: `localgen generate` with `--window N` (the grammar, validation, rows, shards).

Grammars are compiled before timing (one request per label), and the prefix cache is reset
before each measurement. Then, at one size, a cProfile of the grammar run says how much of
its time is spent in the structured-output code (the grammar matchers filling the token
bitmask, and applying it to the logits) against the model's forward pass.
Prints Markdown tables. Run: make bench-inflight (about 15 minutes)
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
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
SIZES = (16, 64, 256)  # --sizes 16 64 256 1024 for the whole curve (1024 alone: ~25 min)
# Where structured output spends its time in vLLM 0.32 and xgrammar (by function name).
GRAMMAR_CODE = ("bitmask", "grammar", "structured_output", "xgrammar", "accept_tokens")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    parser.add_argument("--max-num-seqs", type=int, default=1024, help="vLLM's cap")
    parser.add_argument("--profile-at", type=int, default=64, help="size of the profiled run")
    args = parser.parse_args()

    import localgen.engines.vllm as vllm_engine
    from localgen.config import EngineSettings, GenerateConfig
    from localgen.engines.loader import load_engine
    from localgen.generation.generate import generate
    from localgen.models.resolve import builtin_model
    from localgen.planning.plan import PlanSpec, build_plan
    from localgen.planning.task import load_task

    options = vllm_engine.llm_options
    vllm_engine.llm_options = lambda *a: options(*a) | {"max_num_seqs": args.max_num_seqs}  # type: ignore[assignment]
    model = builtin_model()
    engine = load_engine(EngineSettings(name="vllm", max_model_len=1024), model)
    llm = engine.llm  # type: ignore[attr-defined]
    scheduler = llm.llm_engine.vllm_config.scheduler_config
    cache = llm.llm_engine.vllm_config.cache_config
    task = load_task(TASK)
    work = Path(tempfile.mkdtemp(prefix="localgen-inflight-"))

    def requests(n: int) -> list[Any]:  # the requests `localgen generate -n N/4` sends
        return build_plan(task, PlanSpec(count=n // 4, strategy="zero-shot")).requests

    def chat(n: int, lengths: list[int] | None = None) -> tuple[float, list[int]]:
        """The grammar run, or with `lengths` the free run of those lengths."""
        asked = requests(n)
        params = [engine.sampling_params(r) for r in asked]  # type: ignore[attr-defined]
        for p, length in zip(params, lengths or [], strict=False):
            p.structured_outputs = None
            p.max_tokens, p.min_tokens, p.ignore_eos = length, length, True
        chats = [[{"role": "user", "content": r.prompt}] for r in asked]
        llm.reset_prefix_cache()
        start = time.perf_counter()
        outs = llm.chat(chats, params, use_tqdm=False)
        return time.perf_counter() - start, [len(o.outputs[0].token_ids) for o in outs]

    def through_localgen(n: int) -> tuple[float, int]:
        llm.reset_prefix_cache()
        config = GenerateConfig(
            task_path=TASK,
            out=work / f"run{n}",
            count=n // 4,
            strategy=("zero-shot",),
            window=n,
            check_labels=False,
            quiet=True,
        )
        start = time.perf_counter()
        result = generate(config, engine=engine, model=model)
        return time.perf_counter() - start, result.manifest["tokens"]["completion"]

    warm = requests(4)  # one per label: compiles each label's grammar
    llm.chat(
        [[{"role": "user", "content": r.prompt}] for r in warm],
        [engine.sampling_params(r) for r in warm],  # type: ignore[attr-defined]
        use_tqdm=False,
    )
    print(
        f"vLLM: max_num_seqs {scheduler.max_num_seqs}, max_num_batched_tokens "
        f"{scheduler.max_num_batched_tokens}, KV cache "
        f"{os.environ.get('VLLM_CPU_KVCACHE_SPACE', '?')} GB "
        f"({cache.num_gpu_blocks} blocks of {cache.block_size} tokens); {os.cpu_count()} cores\n",
        flush=True,
    )
    print(
        "| in flight | raw, free tok/s | raw, grammar tok/s | localgen tok/s "
        "| grammar / free | localgen / raw grammar |"
    )
    print("|---|---|---|---|---|---|")
    try:
        for n in args.sizes:
            grammar_s, lengths = chat(n)
            free_s, free_lengths = chat(n, lengths)
            assert free_lengths == lengths
            ours_s, ours_t = through_localgen(n)
            free, grammar = sum(lengths) / free_s, sum(lengths) / grammar_s
            ours = ours_t / ours_s
            print(
                f"| {n} | {free:.1f} | {grammar:.1f} | {ours:.1f} | {grammar / free:.2f} "
                f"| {ours / grammar:.2f} |",
                flush=True,
            )
        profile = cProfile.Profile()
        profile.enable()
        seconds, lengths = chat(args.profile_at)
        tokens = sum(lengths)
        profile.disable()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        engine.close()
    stats = pstats.Stats(profile)
    own: dict[str, float] = {}
    for (file, _, name), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(file).name}:{name}"
        if any(word in where.lower() for word in GRAMMAR_CODE):
            own[where] = own.get(where, 0.0) + tottime
    total = sum(t for _, _, t, _, _ in stats.stats.values())  # type: ignore[attr-defined]
    print(
        f"\nProfile of the grammar run at {args.profile_at} in flight ({seconds:.1f} s, "
        f"{tokens} tokens, under cProfile): time spent in the structured-output code "
        f"itself, {sum(own.values()):.2f} s of {total:.2f} s profiled "
        f"({sum(own.values()) / total:.1%})\n"
    )
    print("| function | own time s | share |")
    print("|---|---|---|")
    for where, t in sorted(own.items(), key=lambda kv: -kv[1])[:8]:
        print(f"| `{where}` | {t:.2f} | {t / total:.1%} |")


if __name__ == "__main__":
    main()
