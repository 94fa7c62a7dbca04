"""`localgen serve` with localgen's top-p filter (the vLLM plugin) and without it.

For each round, without then with: a fresh `localgen serve` on the built-in model
(VLLM_PLUGINS="" in its environment turns the plugin off), then `localgen generate` of the
example task through it (`-n 16 --strategy zero-shot --engine openai --concurrency 64
--no-check-labels --seed 7`: the same 64 requests every time), its output tokens and
generation seconds read from the run, and the server stopped. Prints tokens/s per run,
the ratio over all rounds, and how many rows have the same text for the same request.

Run: python bench/serve_top_p.py --rounds 3 (about 3 minutes a round on 2 CPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
LOCALGEN = Path(sys.executable).parent / "localgen"
TASK = ROOT / "examples" / "support-tickets" / "task.toml"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_run(plugin: bool, out: Path) -> tuple[int, float, pl.DataFrame]:
    """(output tokens, generation seconds, rows) of one run through a fresh server."""
    port = _port()
    env = {k: v for k, v in os.environ.items() if k != "VLLM_PLUGINS"}
    log_path = out.with_suffix(".serve.log")
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [str(LOCALGEN), "serve", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            env=env if plugin else env | {"VLLM_PLUGINS": ""},
        )  # fmt: skip
        try:
            while "serving smollm2-135m-instruct at" not in log_path.read_text():
                if server.poll() is not None:
                    sys.exit(f"the server stopped: see {log_path}")
                time.sleep(1)
            subprocess.run(
                [str(LOCALGEN), "generate", str(TASK), "--out", str(out), "-n", "16",
                 "--strategy", "zero-shot", "--engine", "openai", "--concurrency", "64",
                 "--base-url", f"http://127.0.0.1:{port}/v1", "--no-check-labels",
                 "--seed", "7", "--quiet", "--overwrite"],
                check=True, cwd=ROOT, env=env,
            )  # fmt: skip
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)
    seconds = json.loads((out / "manifest.json").read_text())["timings"]["generate_s"]
    rows = pl.read_parquet(out / "synthetic.parquet").sort("request_key")
    return int(rows["completion_tokens"].sum()), float(seconds), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    totals = {False: [0, 0.0], True: [0, 0.0]}
    texts: dict[bool, list[str]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for n in range(args.rounds):
            for plugin in (False, True):
                tokens, seconds, rows = one_run(plugin, Path(folder) / f"{n}-{plugin}")
                totals[plugin][0] += tokens
                totals[plugin][1] += seconds
                texts[plugin] = rows["text"].to_list()
                name = "with the plugin" if plugin else "vLLM's own"
                print(f"round {n + 1}, {name}: {tokens} tokens in {seconds:.1f} s, "
                      f"{tokens / seconds:.1f} tokens/s", flush=True)  # fmt: skip
    (on_tokens, on_s), (off_tokens, off_s) = totals[True], totals[False]
    same = sum(a == b for a, b in zip(texts[True], texts[False], strict=True))
    print(f"with / without: {(on_tokens / on_s) / (off_tokens / off_s):.2f}x tokens/s over "
          f"{args.rounds} rounds; {same} of {len(texts[True])} rows the same text")  # fmt: skip


if __name__ == "__main__":
    main()
