"""Rows that look like real documents: the German e-mails and the legal clauses, generated
by each model with its seed data, and what came out.

For each model (the built-in SmolLM2-135M; any other named with --models, e.g. the
qwen-0.5b of `localgen models import`) and each example task, one `localgen generate`
run with the task's strategies and seed data, `--count` rows per label. Printed per run:
rows stored and planned, rows that validate again against their schema, failures (with
their reasons), rows cut off (finish reason "length"), and what the rows hold: non-ASCII
characters, line breaks, double quotes, euro signs, and (German task) rows that read
German. A Markdown table goes to runs/bench-documents/results.md.
Run: python bench/documents.py --models builtin qwen-0.5b   (about 15 minutes on 2 CPUs)
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections import Counter
from pathlib import Path

import polars as pl

from localgen.offline import apply_offline_env

ROOT = Path(__file__).resolve().parent.parent
# A row "reads German" when at least two of these words occur in it (a crude check; the
# English ones they resemble are not in the list).
GERMAN = {"und", "ich", "die", "der", "das", "nicht", "mit", "ist", "sie", "mein", "bitte"}
EXAMPLES = {
    "kundenservice-de": ROOT / "examples" / "kundenservice-de",
    "legal-clauses": ROOT / "examples" / "legal-clauses",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["builtin"])
    parser.add_argument("--count", type=int, default=3, help="rows per label")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-documents")
    args = parser.parse_args()
    apply_offline_env()

    from localgen.config import EngineSettings, GenerateConfig
    from localgen.engines.loader import load_engine
    from localgen.generation.generate import generate
    from localgen.models.resolve import resolve_model
    from localgen.planning.schema import RowSchema
    from localgen.planning.task import load_task
    from localgen.text import words

    lines = [
        "| model | task | rows / planned | valid again | failures | cut off | tokens/s "
        "| non-ASCII | line breaks | quotes | € | German |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in args.models:
        model = resolve_model(None if name == "builtin" else name)
        engine = load_engine(EngineSettings(name="vllm"), model)
        for task_name, folder in EXAMPLES.items():
            out = args.out / f"{model.name}-{task_name}"
            config = GenerateConfig(
                task_path=folder / "task.toml",
                out=out,
                count=args.count,
                seed_data=folder / "seed.csv",
                overwrite=True,
                quiet=True,
            )
            start = time.perf_counter()
            result = generate(config, engine=engine, model=model)
            wall = time.perf_counter() - start
            rows = pl.read_parquet(out / "synthetic.parquet")
            max_chars = load_task(folder / "task.toml").generation.text_max_chars
            valid = sum(
                RowSchema(label, max_chars).parse(
                    json.dumps({"text": text, "label": label}, ensure_ascii=False)
                )[0]
                is not None
                for text, label in rows.select("text", "label").iter_rows()
            )
            texts = rows["text"].to_list()
            german = sum(len(GERMAN & set(words(t))) >= 2 for t in texts)
            reasons = Counter(f["reason"] for f in result.failures)
            cut = int((rows["finish_reason"] == "length").sum()) + sum(
                n for r, n in reasons.items() if "cut off" in r
            )
            manifest = json.loads((out / "manifest.json").read_text())
            tokens = manifest["tokens"]["completion"]
            lines.append(
                f"| {model.name} | {task_name} | {rows.height} / {result.planned} "
                f"| {valid}/{rows.height} | {len(result.failures)} "
                f"{dict(reasons) if reasons else ''} | {cut} | {tokens / wall:.1f} "
                f"| {sum(not t.isascii() for t in texts)} | {sum(chr(10) in t for t in texts)} "
                f"| {sum(chr(34) in t for t in texts)} | {sum('€' in t for t in texts)} "
                f"| {german if task_name.endswith('-de') else '-'} |"
            )
            print(lines[-1], flush=True)
            for text in texts[:2]:
                print("   e.g.", json.dumps(text, ensure_ascii=False)[:300], flush=True)
        engine.close()
        del engine
        gc.collect()
    print("\n" + "\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
