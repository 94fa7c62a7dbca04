"""What tests share besides fixtures: the example task's paths, a tiny task, the fakes
(a stand-in encoder, a finished run folder) and a few real-looking rows. Import from here;
conftest.py holds only fixtures and hooks, which pytest injects by name."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from localgen.text import words

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_TASK = ROOT / "examples" / "support-tickets" / "task.toml"
EXAMPLE_SEED = ROOT / "examples" / "support-tickets" / "seed.csv"
EXAMPLE_TEST = ROOT / "examples" / "support-tickets" / "test.csv"

TASK_TOML = """
name = "tiny"
context = "Messages to a help desk."

[generation]
count = 3
max_words = 12

[labels.billing]
description = "Money: invoices and refunds."

[labels.bug]
description = "Something is broken."
"""


# Fakes for the unit and CLI layers.


class BagOfWords:
    """A deterministic stand-in encoder: word counts hashed into 256 dimensions, unit length.
    Texts with the same words in any order have cosine 1."""

    path = "bag-of-words"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), 256), dtype=np.float32)
        for i, text in enumerate(texts):
            for w in words(text):
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 256] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)


REAL = [
    (
        "I was charged twice for the March invoice and need a refund of the second payment",
        "billing",
    ),
    ("Please refund the annual plan, my card was billed after I cancelled", "billing"),
    ("Why does my invoice show a charge for three seats when we only have two", "billing"),
    ("I cannot log in since the password reset link expired this morning", "access"),
    ("My account is locked after too many login attempts, please unlock it", "access"),
    ("The two factor code never arrives on my phone so I cannot sign in", "access"),
]


def make_run(tmp_path: Path, rows: list[dict]) -> Path:
    """A finished run folder holding `rows` (text, label, optional positive_ids,
    check_label and mean_logprob)."""
    run = tmp_path / "run"
    run.mkdir()
    frame = pl.DataFrame(
        {
            "id": [f"syn-{i:016x}" for i in range(len(rows))],
            "text": [r["text"] for r in rows],
            "label": [r["label"] for r in rows],
            "strategy": [r.get("strategy", "zero-shot") for r in rows],
            "positive_ids": [r.get("positive_ids", []) for r in rows],
            "negative_ids": [[] for _ in rows],
            "check_label": [r.get("check_label") for r in rows],
            "mean_logprob": [r.get("mean_logprob") for r in rows],
        },
        schema_overrides={
            "positive_ids": pl.List(pl.Utf8),
            "negative_ids": pl.List(pl.Utf8),
            "check_label": pl.Utf8,
            "mean_logprob": pl.Float64,
        },
    )
    frame.write_parquet(run / "synthetic.parquet")
    (run / "manifest.json").write_text(
        json.dumps({"status": "complete", "task": {"labels": {"billing": {}, "access": {}}}})
    )
    return run


def write_csv(path: Path, pairs: list[tuple[str, str]]) -> Path:
    pl.DataFrame({"text": [t for t, _ in pairs], "label": [lab for _, lab in pairs]}).write_csv(
        path
    )
    return path
