"""Shared fixtures and hooks. The real vLLM engine is started once per test session (the
integration layer); every test gets its own LOCALGEN_HOME. Pytest injects these by name:
the helpers and fakes tests import (paths, BagOfWords, make_run...) live in helpers.py."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from localgen.offline import apply_offline_env
from tests.helpers import TASK_TOML

apply_offline_env()  # tests, like the CLI, never reach a hub


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
