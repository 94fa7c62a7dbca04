"""Does vLLM's prefix cache serve the shared part of labelling prompts on a CPU?

`localgen label` asks about every document with one prompt whose start is the same for
all of them (the task, the labels, the real examples) and whose end is the document. On
one in-process vLLM engine (localgen's CPU settings: whole prefills, 32-token KV blocks),
for each of --trials fresh prefixes (a number no earlier prompt had, then the example
task's labelling prompt with 4 real tickets per label):
- one request alone (cold: nothing of its prefix cached), then a second with the same
  prefix and another ticket (warm): wall time and vLLM's own count of prompt tokens its
  cache served (num_cached_tokens);
- two more requests with the same prefix and other tickets, the answer's form changed:
  `{"label":"<name>"}` all decoded (a plain regex, `Answer`; before localgen started the
  reply in the prompt, this was every label answer), and the label's name alone. The
  warm request above is the default: `{"label":"` in the prompt (`LabelChoice`), the
  rest decoded. What the answer's form costs once the prefix is cached;
- the same pair again with a third fresh prefix, each asked for one token only (vLLM's
  own `LLM.chat`, max_tokens=1): the prefill alone, without the answer's decoding steps;
- then --batch requests with another fresh prefix, all handed to the engine at once, as
  `label` does: the share of their prompt tokens the cache served.
Prints a Markdown table: per model, the median cold and warm time of the whole answer
and of the prefill alone, their ratios, the tokens computed, and the batch's cached share.
Run: python bench/prefix_cache.py --models builtin qwen-0.5b
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from localgen.offline import apply_offline_env

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "support-tickets"


@dataclass(frozen=True)
class Answer:
    """A constraint that is only a regex: the engine decodes all of it."""

    regex: str
    max_tokens: int = 24


def measure(model_name: str, trials: int, batch: int) -> dict[str, float]:
    from localgen.config import EngineSettings
    from localgen.data import read_task_data
    from localgen.documents.asking import DocumentPrompt
    from localgen.engines.loader import load_engine
    from localgen.models.resolve import resolve_model
    from localgen.planning.task import load_task

    task = load_task(EXAMPLE / "task.toml")
    seed = read_task_data(EXAMPLE / "seed.csv", "message", "team", task.label_names)
    tickets = pl.read_csv(EXAMPLE / "test.csv")["message"].to_list()
    model = resolve_model(None if model_name == "builtin" else model_name)
    engine = load_engine(EngineSettings(name="vllm", max_model_len=4096), model)
    prompt = DocumentPrompt(task, seed, 4, 0, engine.context, None)
    asked = [prompt.ask(f"doc-{i}", t, i).request for i, t in enumerate(tickets)]
    from vllm import SamplingParams

    one_token = SamplingParams(max_tokens=1, temperature=0.0)
    cold_s, warm_s, cold_computed, warm_computed, shares = [], [], [], [], []
    prefill_cold: list[float] = []
    form_s: dict[str, list[float]] = {"decoded": [], "name": []}
    tokens: dict[str, int] = {}
    prefill_warm: list[float] = []
    try:
        list(engine.generate([replace(asked[0], prompt="Warm-up.\n" + asked[0].prompt)]))
        for trial in range(trials):
            fresh = f"Batch {time.time_ns()}.\n"
            for i, (times, computed) in enumerate(
                ((cold_s, cold_computed), (warm_s, warm_computed))
            ):
                request = replace(asked[2 * trial + i], prompt=fresh + asked[2 * trial + i].prompt)
                t0 = time.perf_counter()
                [done] = engine.generate([request])
                times.append(time.perf_counter() - t0)
                computed.append(done.prompt_tokens - (done.cached_tokens or 0))
            names = "|".join(re.escape(n) for n in task.label_names)
            forms = {"decoded": '\\{"label":"(?:' + names + ')"\\}', "name": f"(?:{names})"}
            for j, (form, regex) in enumerate(forms.items()):
                r = asked[20 + 2 * trial + j]
                t0 = time.perf_counter()
                [other] = engine.generate(
                    [replace(r, prompt=fresh + r.prompt, schema=Answer(regex))]
                )
                form_s[form].append(time.perf_counter() - t0)
                tokens[form] = other.completion_tokens
            tokens["started"] = done.completion_tokens
            fresh = f"Prefill {time.time_ns()}.\n"
            for i, times in enumerate((prefill_cold, prefill_warm)):
                t0 = time.perf_counter()
                engine.llm.chat(  # type: ignore[attr-defined]
                    [{"role": "user", "content": fresh + asked[2 * trial + i].prompt}],
                    one_token,
                    use_tqdm=False,
                )
                times.append(time.perf_counter() - t0)
            fresh = f"Batch {time.time_ns()}.\n"
            many = [replace(r, prompt=fresh + r.prompt) for r in asked[:batch]]
            answers = list(engine.generate(many))
            prompt_tokens = sum(a.prompt_tokens for a in answers)
            shares.append(sum(a.cached_tokens or 0 for a in answers) / prompt_tokens)
    finally:
        engine.close()
    cold, warm = statistics.median(cold_s), statistics.median(warm_s)
    return {
        "prompt_tokens": done.prompt_tokens,
        "cold_s": cold,
        "warm_s": warm,
        "ratio": warm / cold,
        "forms": {
            "decoded": (tokens["decoded"], statistics.median(form_s["decoded"])),
            "started": (tokens["started"], warm),
            "name": (tokens["name"], statistics.median(form_s["name"])),
        },
        "prefill_cold_s": statistics.median(prefill_cold),
        "prefill_warm_s": statistics.median(prefill_warm),
        "prefill_ratio": statistics.median(prefill_warm) / statistics.median(prefill_cold),
        "cold_computed": statistics.median(cold_computed),
        "warm_computed": statistics.median(warm_computed),
        "batch_share": statistics.median(shares),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["builtin"])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32, help="requests handed over at once")
    args = parser.parse_args()
    apply_offline_env()
    lines = [
        "| model | prompt tokens | answer cold / warm s | warm / cold | prefill cold / warm s "
        f"| warm / cold | tokens computed cold / warm | cached share, {args.batch} at once |",
        "|---|---|---|---|---|---|---|---|",
    ]
    measured = {}
    for name in args.models:
        got = measured[name] = measure(name, args.trials, args.batch)
        lines.append(
            f"| {name} | {got['prompt_tokens']} | {got['cold_s']:.3f} / {got['warm_s']:.3f} | "
            f"{got['ratio']:.2f} | {got['prefill_cold_s']:.3f} / {got['prefill_warm_s']:.3f} | "
            f"{got['prefill_ratio']:.2f} | {got['cold_computed']:.0f} / "
            f"{got['warm_computed']:.0f} | {got['batch_share']:.1%} |"
        )
        print(lines[-1], flush=True)
    print("\n".join(lines))
    print("\n| model | answer | decoding steps | warm s |\n|---|---|---|---|")
    shown = {
        "decoded": '`{"label":"<name>"}`, all decoded',
        "started": '`{"label":"` in the prompt, the rest decoded (the default)',
        "name": "the name alone",
    }
    for name, got in measured.items():
        for form, (steps, seconds) in got["forms"].items():
            print(f"| {name} | {shown[form]} | {steps} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
