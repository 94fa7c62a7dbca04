"""Shared fixtures. The real vLLM engine is started once per test session (slow tests)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from localgen.offline import apply_offline_env

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

    engine = load_engine(EngineSettings(name="vllm", max_model_len=1024), builtin_model)
    yield engine
    engine.close()
