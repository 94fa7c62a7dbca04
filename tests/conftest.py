"""Shared fixtures and fakes. The real vLLM engine is started once per test session (the
integration layer); every test gets its own LOCALGEN_HOME."""

from __future__ import annotations

import hashlib
import json
import textwrap
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from localgen.offline import apply_offline_env
from localgen.text import words

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_TASK = ROOT / "examples" / "support-tickets" / "task.toml"
EXAMPLE_SEED = ROOT / "examples" / "support-tickets" / "seed.csv"
EXAMPLE_TEST = ROOT / "examples" / "support-tickets" / "test.csv"

apply_offline_env()  # tests, like the CLI, never reach a hub

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


@pytest.fixture
def write_task(tmp_path: Path) -> Callable[[str], Path]:
    """Write task TOML text to a file and return its path."""

    def write(text: str = TASK_TOML, name: str = "task.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def task_file(write_task: Callable[[str], Path]) -> Path:
    return write_task(TASK_TOML)


@pytest.fixture
def seed_csv(tmp_path: Path) -> Path:
    path = tmp_path / "seed.csv"
    path.write_text(
        "body,cls\n"
        '"I was charged twice for March, please refund one",billing\n'
        '"Where can I download last year\'s invoices?",billing\n'
        '"Why did my plan price go up?",billing\n'
        '"The export button crashes the app",bug\n'
        '"Totals on the report are wrong by a few cents",bug\n'
    )
    return path


@pytest.fixture(scope="session")
def builtin_model():  # type: ignore[no-untyped-def]
    from localgen.models.resolve import builtin_model as resolve

    return resolve()


@pytest.fixture(scope="session")
def vllm_engine(builtin_model) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """One real vLLM engine (CPU build) on the built-in model for the whole session."""
    from localgen.config import EngineSettings
    from localgen.engines.loader import load_engine

    engine = load_engine(EngineSettings(name="vllm", max_model_len=2048), builtin_model)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def _session_home() -> Path:
    """The localgen home the session started with: the built-in model is converted there,
    once, and linked into every test's own home."""
    from localgen.models.resolve import localgen_home

    return localgen_home()


@pytest.fixture(autouse=True)
def localgen_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, _session_home: Path
) -> Path:
    """Each test its own LOCALGEN_HOME, so nothing a test imports or unbundles reaches the
    user's. Once the session-scoped `builtin_model` fixture has prepared the built-in model
    (session fixtures run before this one), it is linked in rather than converted again."""
    from localgen.models.resolve import BUILTIN_NAME

    home = tmp_path_factory.mktemp("home")
    prepared = _session_home / "models" / BUILTIN_NAME
    if prepared.is_dir():
        (home / "models").mkdir()
        (home / "models" / BUILTIN_NAME).symlink_to(prepared)
    monkeypatch.setenv("LOCALGEN_HOME", str(home))
    return home


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
