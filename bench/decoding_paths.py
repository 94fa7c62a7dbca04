"""The default decoding path against the other ways vLLM can write the same rows, alternating
in one process on the same requests, and where its time goes.

Per model, two vLLM engines stay loaded side by side (vLLM takes one structured-output
backend per engine): guidance and xgrammar. The `--count` x 4 zero-shot requests of the
support-tickets example (the same prompts, sampling settings and seeds, as `generate -n
COUNT` plans them) go through localgen's engine (`engine.generate`, as `generate` sends
them, all in flight at once) six ways:

- default: guidance with the row's regex (any Unicode text, JSON escapes included), and
  localgen's top-p filter (`engines/vllm_sampling.py`);
- default, vLLM's sort: the same with vLLM's own top-p filter (a sort of the whole
  vocabulary per row and step), as localgen ran before;
- xgrammar, escape-free: the row's EBNF grammar (Unicode without escapes; what
  `--backend xgrammar` sends);
- xgrammar, ASCII: the grammar localgen had before Unicode rows (printable ASCII
  without `"` and `\\`, `bench/grammar.py`);
- none: no constraint, each request asked for exactly as many tokens as it took on the
  default path (`ignore_eos`), so the tokens decoded are the same and the ratio is what
  the constraint costs;
- none, ASCII's lengths: the same, with the lengths of the ASCII path's rows. Tokens/s
  depends on the rows' lengths (a batch runs full only while its longest rows last), so
  a path that writes other rows is compared per token with its own free run.

Each round runs them in a rotated order, with the prefix cache reset before each; every
grammar is compiled before timing. "same rows" counts the rows identical to the default
path's. With `--profile DIR`, the default path with each top-p filter runs once more
under py-spy (Python frames, 100 samples/s), and the engine's time is split into the model
(its layers, and the output projection to the vocabulary), sampling, the grammar and the
rest (collapsed stacks kept in DIR).
Prints Markdown tables. Run: python bench/decoding_paths.py --models builtin qwen-0.5b
(about 8 minutes for the built-in model, 25 for both)
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grammar import AsciiRowSchema  # noqa: E402

from localgen.offline import apply_offline_env  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TASK = ROOT / "examples" / "support-tickets" / "task.toml"
DEFAULT, SORT = "default", "default, vLLM's sort"
ASCII, FREE, FREE_ASCII = "xgrammar, ASCII", "none", "none, ASCII's lengths"
PATHS = (DEFAULT, SORT, "xgrammar, escape-free", ASCII, FREE, FREE_ASCII)
# Two 256-bit FMA units per core (AVX2): 2 x 8 FP32 lanes x 2 FLOPs (multiply and add).
FLOPS_PER_CYCLE = 32
# Where an engine step spends its time, by the innermost frame that names one of these.
PARTS = {
    "grammar": ("bitmask", "grammar", "structured_output", "llguidance", "xgrammar"),
    "sampling": ("Sampler.", "sampler", "top_k_top_p", "topk_topp", "gumbel", "nucleus"),
    "model (layers)": ("_model_forward",),
    "model (output projection)": ("compute_logits",),
}


@dataclass
class Tally:
    wall: float = 0.0
    tokens: int = 0
    rows: int = 0
    valid: int = 0
    wide: int = 0  # valid rows with a character outside ASCII
    escaped: int = 0  # valid rows whose JSON has an escape (only guidance admits them)
    same: int = 0  # rows identical to the default path's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["builtin"], help="builtin, qwen-0.5b, ...")
    parser.add_argument("--count", type=int, default=16, help="rows per label (4 labels)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--profile", type=Path, help="folder for py-spy profiles")
    args = parser.parse_args()
    if args.profile:
        py_spy()  # before the rounds, not after them
    apply_offline_env()
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")

    from localgen.planning.plan import PlanSpec, build_plan
    from localgen.planning.task import load_task

    requests = build_plan(
        load_task(TASK), PlanSpec(count=args.count, strategy="zero-shot")
    ).requests
    ascii_requests = [
        replace(r, schema=AsciiRowSchema(r.label, r.schema.max_chars)) for r in requests
    ]
    tables = [measure(name, args, requests, ascii_requests) for name in args.models]
    print("\n\n".join(tables))


def measure(name: str, args: Any, requests: list[Any], ascii_requests: list[Any]) -> str:
    """One model: both engines loaded, the rounds, the table (and the profiles)."""
    from vllm.v1.sample.ops import topk_topp_sampler as sampler

    from localgen.config import EngineSettings
    from localgen.engines.loader import load_engine
    from localgen.models.resolve import resolve_model

    model = resolve_model(None if name == "builtin" else name)
    engines = {
        backend: load_engine(EngineSettings(name="vllm", backend=backend), model)
        for backend in ("guidance", "xgrammar")
    }
    lengths: dict[str, dict[str, int]] = {}  # free path -> request key -> tokens

    def run(path: str) -> tuple[float, list[Any]]:
        engine = engines["xgrammar" if path.startswith("xgrammar") else "guidance"]
        batch = ascii_requests if path in (ASCII, FREE_ASCII) else requests
        if path in (FREE, FREE_ASCII):
            return free_run(engine, batch, lengths[path])
        engine.llm.reset_prefix_cache()  # type: ignore[attr-defined]
        ours = sampler.apply_top_k_top_p
        if path == SORT:
            sampler.apply_top_k_top_p = ours.original
        try:
            start = time.perf_counter()
            completions = list(engine.generate(batch))
            return time.perf_counter() - start, completions
        finally:
            sampler.apply_top_k_top_p = ours

    # Compile every label's grammar on both engines, and learn the default's lengths.
    for path in (DEFAULT, "xgrammar, escape-free", ASCII):
        batch = ascii_requests if "ASCII" in path else requests
        one_per_label = list({r.label: r for r in batch}.values())
        list(
            engines["xgrammar" if path.startswith("xgrammar") else "guidance"].generate(
                one_per_label
            )
        )
    _, first = run(DEFAULT)
    lengths[FREE] = {c.key: c.completion_tokens for c in first}
    lengths[FREE_ASCII] = {c.key: c.completion_tokens for c in run(ASCII)[1]}
    texts = {c.key: c.text for c in first}

    tallies = {path: Tally() for path in PATHS}
    for round_ in range(args.rounds):
        shift = round_ % len(PATHS)
        for path in PATHS[shift:] + PATHS[:shift]:
            wall, completions = run(path)
            tally_add(tallies[path], wall, completions, requests, path, texts)
            print(
                f"{name} round {round_ + 1} {path}: {wall:.1f} s, "
                f"{sum(c.completion_tokens for c in completions) / wall:.1f} tok/s",
                flush=True,
            )
    result = table(name, model, tallies, len(requests), args.rounds)
    print(result, flush=True)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        shares = {
            path: profiled(lambda p=path: run(p), args.profile / f"{name}-{i}.txt")
            for i, path in enumerate((DEFAULT, SORT))
        }
        result += "\n\n" + profile_table(shares)
        print(result[result.rindex("\n\n") :], flush=True)
    for engine in engines.values():
        engine.close()
    gc.collect()
    return result


def free_run(engine: Any, batch: list[Any], lengths: dict[str, int]) -> tuple[float, list[Any]]:
    """The same prompts with no constraint, each decoding exactly its default-path length,
    through the same `vllm.LLM` (its `chat`, all at once)."""
    from localgen.engines.base import Completion

    params = []
    for r in batch:
        p = engine.sampling_params(r)
        p.structured_outputs = None
        p.max_tokens = p.min_tokens = lengths[r.key]
        p.ignore_eos = True
        params.append(p)
    llm = engine.llm
    llm.reset_prefix_cache()
    start = time.perf_counter()
    chats = [[{"role": "user", "content": r.prompt}] for r in batch]
    outs = llm.chat(chats, params, use_tqdm=False)
    wall = time.perf_counter() - start
    return wall, [
        Completion(r.key, o.outputs[0].text, "length", 0, len(o.outputs[0].token_ids))
        for r, o in zip(batch, outs, strict=True)
    ]


def tally_add(
    t: Tally,
    wall: float,
    completions: list[Any],
    requests: list[Any],
    path: str,
    texts: dict[str, str],
) -> None:
    by_key = {r.key: r for r in requests}
    t.wall += wall
    for c in completions:
        t.tokens += c.completion_tokens
        t.rows += 1
        t.same += c.text == texts[c.key]
        if path in (FREE, FREE_ASCII):
            continue
        row, _ = by_key[c.key].schema.parse(c.text)
        if row is not None:
            t.valid += 1
            t.wide += not row["text"].isascii()
            t.escaped += "\\" in c.text


def table(name: str, model: Any, tallies: dict[str, Tally], n: int, rounds: int) -> str:
    def rate(t: Tally) -> float:
        return t.tokens / t.wall

    default = tallies[DEFAULT]
    constrained = [p for p in PATHS if p not in (DEFAULT, SORT, FREE, FREE_ASCII)]
    fastest = max(constrained, key=lambda p: rate(tallies[p]))
    lines = [
        f"### {name} ({model.path.name}): {n} requests x {rounds} rounds per path\n",
        "| path | rows | valid | same rows | non-ASCII rows | rows with an escape "
        "| output tokens | wall s | tokens/s | rows/s | tokens/s vs default |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path, t in tallies.items():
        free = path in (FREE, FREE_ASCII)
        valid, wide, escaped = (
            ("-", "-", "-") if free else (f"{t.valid}/{t.rows}", t.wide, t.escaped)
        )
        lines.append(
            f"| {path} | {t.rows} | {valid} | {'-' if free else t.same} | {wide} | {escaped} "
            f"| {t.tokens} | {t.wall:.1f} | {rate(t):.1f} | {t.rows / t.wall:.2f} "
            f"| {rate(t) / rate(default):.2f} |"
        )
    lines.append(
        f"\ndefault / fastest other constrained path ({fastest}), tokens/s: "
        f"{rate(default) / rate(tallies[fastest]):.2f}; rows/s: "
        f"{(default.rows / default.wall) / (tallies[fastest].rows / tallies[fastest].wall):.2f}"
    )
    lines.append(
        "per token, against no constraint at the same rows' lengths: default "
        f"{rate(default) / rate(tallies[FREE]):.2f}, xgrammar ASCII "
        f"{rate(tallies[ASCII]) / rate(tallies[FREE_ASCII]):.2f}"
    )
    lines.append(ceiling(model))
    return "\n".join(lines)


def ceiling(model: Any) -> str:
    """The CPU's compute-bound limit for this model: 2 FLOPs per weight per token (each
    weight matrix, the output projection included, multiplies every token once; attention
    over these short contexts is left out) against the peak of the cores' FMA units."""
    import json

    from safetensors import safe_open

    config = json.loads((model.path / "config.json").read_text())
    weights = 0
    for shard in model.path.glob("*.safetensors"):
        with safe_open(shard, "pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if "embed_tokens" not in name and "lm_head" not in name:
                    weights += math.prod(f.get_slice(name).get_shape())
    weights += config["vocab_size"] * config["hidden_size"]  # the output projection
    flops = 2 * weights
    mhz = max(
        float(line.split(":")[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("cpu MHz")
    )
    cores = os.cpu_count() or 1
    peak = cores * mhz * 1e6 * FLOPS_PER_CYCLE
    return (
        f"ceiling: {weights / 1e6:.0f} M weights per token ({flops / 1e9:.2f} GFLOP), "
        f"{cores} cores x {mhz / 1000:.2f} GHz x {FLOPS_PER_CYCLE} FP32 FLOP/cycle = "
        f"{peak / 1e9:.0f} GFLOP/s: at most {peak / flops:.0f} tokens/s"
    )


def py_spy() -> str:
    """The py-spy command (beside this Python, or on PATH)."""
    beside = Path(sys.executable).parent / "py-spy"
    spy = str(beside) if beside.exists() else shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    return spy


def profiled(fn: Any, raw: Path) -> tuple[float, dict[str, float]]:
    """`fn` run with py-spy attached to this process (Python frames, idle threads left
    out): its wall time, and the share of the engine's samples in each of PARTS."""
    spy = py_spy()
    proc = subprocess.Popen(
        [spy, "record", "--pid", str(os.getpid()), "--format", "raw", "--rate", "100",
         "--output", str(raw)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(2.0)  # attached
    wall, _ = fn()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    return wall, shares(raw)


def shares(raw: Path) -> dict[str, float]:
    """The share of the samples inside `engine.generate` that fall in each of PARTS (by the
    innermost frame that names one), the rest of the engine's step, and localgen's loop."""
    parts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "VllmEngine.generate" not in stack:
            continue
        frames = stack.split(";")
        part = next(
            (
                name
                for f in reversed(frames)
                for name, words in PARTS.items()
                if any(w in f for w in words)
            ),
            "engine step, other" if any("EngineCore.step" in f for f in frames) else "localgen",
        )
        parts[part] += int(count)
    total = sum(parts.values())
    return {part: parts[part] / total for part in (*PARTS, "engine step, other", "localgen")}


def profile_table(shares: dict[str, tuple[float, dict[str, float]]]) -> str:
    parts = list(next(iter(shares.values()))[1])
    lines = [
        "Where the time goes, under py-spy (share of the samples inside `engine.generate`):\n",
        "| path | wall s (profiled) | " + " | ".join(parts) + " |",
        "|---|---|" + "---|" * len(parts),
    ]
    for path, (wall, share) in shares.items():
        lines.append(
            f"| {path} | {wall:.1f} | " + " | ".join(f"{share[p]:.1%}" for p in parts) + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
