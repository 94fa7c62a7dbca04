"""Why the vLLM engine runs float32 on CPUs without native bfloat16.

Loads the built-in model twice in one process (bfloat16, then float32), sends the same
planned requests of the example task to each, with and without the row grammar, and
prints tokens/s per setting as a Markdown table. Run: make bench-dtype
"""

from __future__ import annotations

import gc
import os
import sys
import time
from pathlib import Path

from localgen.offline import apply_offline_env

apply_offline_env()
os.environ.update(VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_LOGGING_LEVEL="ERROR")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

ROOT = Path(__file__).resolve().parent.parent
ROWS_PER_LABEL = 8  # 32 requests: enough to fill the batch, short enough to repeat


def main() -> None:
    from vllm import LLM, SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    from localgen.models.resolve import builtin_model
    from localgen.planning.plan import PlanSpec, build_plan
    from localgen.planning.task import load_task

    model = builtin_model()
    plan = build_plan(
        load_task(ROOT / "examples/support-tickets/task.toml"), PlanSpec(count=ROWS_PER_LABEL)
    )
    chats = [[{"role": "user", "content": r.prompt}] for r in plan.requests]
    flags = Path("/proc/cpuinfo").read_text()
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    print(
        f"CPU: native bfloat16 {'yes' if native else 'no'}, {os.cpu_count()} cores; "
        f"{len(chats)} requests of the example task",
        file=sys.stderr,
    )
    print("| dtype | constraint | wall s | output tokens | tokens/s |")
    print("|---|---|---|---|---|")
    for dtype in ("bfloat16", "float32"):
        llm = LLM(
            model=str(model.path),
            dtype=dtype,
            max_model_len=1024,
            seed=0,
            enforce_eager=True,
            distributed_executor_backend="uni",
            structured_outputs_config={"backend": "xgrammar", "disable_any_whitespace": True},
        )
        for constrained in (False, True):
            params = [
                SamplingParams(
                    temperature=r.temperature,
                    top_p=r.top_p,
                    max_tokens=r.max_tokens,
                    seed=r.seed,
                    structured_outputs=StructuredOutputsParams(grammar=r.schema.ebnf)
                    if constrained
                    else None,
                )
                for r in plan.requests
            ]
            start = time.perf_counter()
            outs = llm.chat(chats, params, use_tqdm=False)  # type: ignore[arg-type]
            wall = time.perf_counter() - start
            tokens = sum(len(o.outputs[0].token_ids) for o in outs)
            print(
                f"| {dtype} | {'row grammar' if constrained else 'none'} | {wall:.1f} | "
                f"{tokens} | {tokens / wall:.1f} |",
                flush=True,
            )
        llm.llm_engine.engine_core.shutdown()
        del llm
        gc.collect()


if __name__ == "__main__":
    main()
