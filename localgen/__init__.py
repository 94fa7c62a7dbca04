"""localgen: labeled synthetic training text from a local LLM, fully offline.

The package reads in the order the data flows; each stage imports only the stages above
it and the shared primitives:

1. `planning/`    task file -> the plan: every request, by strategy and label, built on demand
2. `models/`      the local LLM to generate with (built-in, imported, bundled)
3. `engines/`     requests -> raw completions: vLLM, transformers, an OpenAI-compatible
                  server, Ray replicas, and `localgen serve`
4. `generation/`  completions -> validated rows with provenance, in a resumable run folder
5. `curation/`    which rows to keep, and why the others were dropped
6. `report/`      the rows measured against the real data: metrics.json, report.html
7. `classify/`    a classifier trained on real and synthetic rows, scored on real data
8. `jobs/`        whole jobs over every stage: `run` (and its `--keep` rounds) and `boost`
9. `cli/`         the command line, by the same stages

Shared primitives: `config` (every setting and default), `errors`, `offline` (the egress
guard), `progress`, `artifacts` (atomic writes, checksums, timestamps), `locks` (one
writer per folder), `data` (the user's labeled files, and what contradicts itself in
them), `text` (words and n-grams) and `vectors/` (sentence embeddings, neighbour search,
the linear head).
"""

__version__ = "0.1.0"
