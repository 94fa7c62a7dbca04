"""Every benchmark in one command, sized to finish in under 15 minutes on 2 CPUs.

Runs each bench script in its own process (so each pays its own start-up, as a user
would), one after the other, and writes what each printed to stdout, with the command
and its wall time, to runs/bench/RESULTS.md. The real-data benchmark is not included: it
generates about 400 rows and takes about 15 minutes alone (make bench-real-data).
Run: make bench
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# vLLM logs to stdout; its lines ("(MainProcess pid=1) INFO 11-21 ...") are not results.
LOG_LINE = re.compile(r"^(\(\w+ pid=\d+\) )?(DEBUG|INFO|WARNING) \d\d-\d\d ")
# (script, arguments): smaller than each script's defaults where those take minutes.
SUITE = [
    ("scale.py", []),
    ("overhead.py", ["--count", "8", "--rounds", "2"]),
    ("engines.py", ["--count", "4"]),
    ("backends.py", ["--count", "4"]),
    ("diversity.py", ["--count", "20", "--out", "runs/bench-diversity-small"]),
    ("curation.py", ["--rows", "1000", "4000"]),
]


def main() -> None:
    out = ROOT / "runs" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    sections = [
        "# Benchmarks",
        "",
        f"`make bench`, {datetime.now(UTC).date().isoformat()}, {sys.platform}.",
    ]
    started = time.monotonic()
    for script, arguments in SUITE:
        command = [sys.executable, str(ROOT / "bench" / script), *arguments]
        shown = " ".join(["python", f"bench/{script}", *arguments])
        print(f"== {shown}", flush=True)
        t0 = time.monotonic()
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        seconds = time.monotonic() - t0
        stdout = "\n".join(line for line in result.stdout.splitlines() if not LOG_LINE.match(line))
        print(stdout, flush=True)
        status = ""
        if result.returncode != 0:
            status = f", FAILED with exit code {result.returncode}"
            print("\n".join(result.stderr.strip().splitlines()[-5:]), file=sys.stderr)
        sections += ["", f"## `{shown}` ({seconds:.0f} s{status})", "", stdout.strip()]
    total = time.monotonic() - started
    sections += ["", f"Total: {total / 60:.1f} min."]
    (out / "RESULTS.md").write_text("\n".join(sections) + "\n")
    print(f"total {total / 60:.1f} min; tables in {out / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
