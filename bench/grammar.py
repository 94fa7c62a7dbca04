"""The row grammar: compile time per label and per backend, and vLLM's tokens/s with the
Unicode grammar against the ASCII-only grammar localgen used before (same prompts, one run).

Part 1 compiles one label's grammar at each `--chars` size with each backend's own
library and the built-in model's tokenizer, no engine: xgrammar (the EBNF grammar),
llguidance (the regex, as vLLM's guidance backend gets it) and outlines_core (the regex,
as vLLM's outlines backend gets it; skipped above `--outlines-max` characters, where it
takes minutes). Part 2 starts one vLLM engine per backend and sends the same zero-shot
requests of the support-tickets example with each grammar, alternating (ASCII, Unicode,
ASCII, Unicode) so the machine's noise falls on both alike.
Run: python bench/grammar.py   (about 6 minutes on 2 CPUs)
"""

from __future__ import annotations

import argparse
import gc
import time
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any

from localgen.offline import apply_offline_env
from localgen.planning.schema import MIN_TEXT_CHARS, RowSchema

ROOT = Path(__file__).resolve().parent.parent
TASK = ROOT / "examples" / "support-tickets" / "task.toml"
ASCII_CLASS = "A-Za-z0-9 ,.:;!?'()&%$#@+/*=_~<>"  # then "-": the class of localgen <= 0.x


class AsciiRowSchema(RowSchema):
    """The grammar localgen had before Unicode text: printable ASCII without `"` and `\\`,
    one line, so no escape is ever written."""

    @cached_property
    def regex(self) -> str:
        body = f"[A-Za-z0-9][{ASCII_CLASS}-]{{{MIN_TEXT_CHARS - 1},{self.max_chars - 1}}}"
        return f'\\{{"text":"{body}","label":"{self.label}"\\}}'

    @property
    def ebnf(self) -> str:
        body = f"[A-Za-z0-9] [{ASCII_CLASS}\\-]{{{MIN_TEXT_CHARS - 1},{self.max_chars - 1}}}"
        return f'root ::= "{{\\"text\\":\\"" {body} "\\",\\"label\\":\\"{self.label}\\"}}"'


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compile_times(sizes: list[int], outlines_max: int) -> list[str]:
    import llguidance
    import llguidance.hf
    import outlines_core
    import xgrammar
    from transformers import AutoTokenizer
    from vllm.v1.structured_output.utils import get_outlines_vocabulary

    from localgen.models.resolve import builtin_model

    tokenizer = AutoTokenizer.from_pretrained(builtin_model().path)
    info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=len(tokenizer))
    compiler = xgrammar.GrammarCompiler(info, cache_enabled=False)
    lltok = llguidance.hf.from_tokenizer(tokenizer)
    vocabulary = get_outlines_vocabulary(tokenizer)
    lines = [
        "| grammar | max_chars | xgrammar (EBNF) s | llguidance (regex) s "
        "| outlines_core (regex) s |",
        "|---|---|---|---|---|",
    ]

    def xgr(schema: RowSchema) -> None:  # compile, then the first token mask
        matcher = xgrammar.GrammarMatcher(compiler.compile_grammar(schema.ebnf))
        matcher.fill_next_token_bitmask(xgrammar.allocate_token_bitmask(1, info.vocab_size))

    def llg(schema: RowSchema) -> None:
        grammar = llguidance.grammar_from("regex", schema.regex)
        llguidance.LLMatcher(lltok, grammar).compute_bitmask()

    for size in sizes:
        for name, cls in (("ASCII (before)", AsciiRowSchema), ("Unicode", RowSchema)):
            schema = cls("billing", size)
            index = lambda s=schema: outlines_core.Index(s.regex, vocabulary.inner)  # noqa: E731
            oc = f"{timed(index):.2f}" if size <= outlines_max else "not run"
            xgr_s, llg_s = timed(lambda s=schema: xgr(s)), timed(lambda s=schema: llg(s))
            lines.append(f"| {name} | {size} | {xgr_s:.3f} | {llg_s:.3f} | {oc} |")
            print(lines[-1], flush=True)
    return lines


def throughput(backends: list[str], count: int, repeats: int) -> list[str]:
    from localgen.config import EngineSettings
    from localgen.engines.loader import load_engine
    from localgen.models.resolve import builtin_model
    from localgen.planning.plan import PlanSpec, build_plan
    from localgen.planning.task import load_task

    model = builtin_model()
    requests = build_plan(load_task(TASK), PlanSpec(count=count, strategy="zero-shot")).requests
    grammars = {
        "ASCII (before)": [
            replace(r, schema=AsciiRowSchema(r.label, r.schema.max_chars)) for r in requests
        ],
        "Unicode": requests,
    }
    lines = [
        "| backend | grammar | rows | output tokens | wall s | tokens/s | valid | non-ASCII rows |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for backend in backends:
        engine = load_engine(EngineSettings(name="vllm", backend=backend), model)
        list(engine.generate([r for rs in grammars.values() for r in rs[:4]]))  # compile
        totals = {name: [0, 0.0, 0, 0, 0] for name in grammars}
        for _ in range(repeats):
            for name, batch in grammars.items():
                by_key = {r.key: r for r in batch}
                start = time.perf_counter()
                completions = list(engine.generate(batch))
                t = totals[name]
                t[1] += time.perf_counter() - start
                for c in completions:
                    row, _ = by_key[c.key].schema.parse(c.text)
                    t[0] += c.completion_tokens
                    t[2] += row is not None
                    t[3] += row is not None and not row["text"].isascii()
                    t[4] += 1
        for name, (tokens, wall, valid, wide, n) in totals.items():
            lines.append(
                f"| {backend} | {name} | {n} | {tokens} | {wall:.1f} | {tokens / wall:.1f} "
                f"| {valid}/{n} | {wide} |"
            )
            print(lines[-1], flush=True)
        engine.close()
        del engine
        gc.collect()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chars", type=int, nargs="+", default=[280, 4000])
    parser.add_argument("--outlines-max", type=int, default=400)
    parser.add_argument("--backends", nargs="+", default=["guidance", "xgrammar"])
    parser.add_argument("--count", type=int, default=8, help="rows per label and batch")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-grammar")
    args = parser.parse_args()
    apply_offline_env()
    lines = compile_times(args.chars, args.outlines_max)
    lines += ["", *throughput(args.backends, args.count, args.repeats)]
    print("\n" + "\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
