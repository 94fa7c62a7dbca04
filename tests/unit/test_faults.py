"""Faults a user met that need no run to replay: a wheel whose declared dependencies miss
a package localgen imports (numpy) or a subpackage, and --quiet letting the engines'
loading bars and warnings through."""

from __future__ import annotations

import ast
import logging
import os
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner

from localgen.cli import cli
from tests.helpers import EXAMPLE_TASK, ROOT

PACKAGE = ROOT / "localgen"
# Imported inside functions only, by the features of an extra (pyproject's cpu, gpu, ray)
# or brought by one: never by plan, generate --engine fake, curate or export.
EXTRAS = {
    "vllm",  # cpu / gpu
    "torch",  # installed first by the Makefile, else by the cpu / gpu extras
    "transformers",  # with vllm, and sentence-transformers
    "outlines",  # cpu / gpu
    "sentence_transformers",  # cpu / gpu: train --method setfit
    "datasets",  # sentence-transformers[train]
    "safetensors",  # with transformers: the classifier's head
    "faiss",  # cpu / gpu: faiss-cpu
    "ray",  # ray
}


def _imports() -> dict[str, set[str]]:
    """Each third-party top-level module localgen imports, and the files importing it."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "localgen" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_package_localgen_imports_is_declared() -> None:
    """A clean venv with the wheel and what it declares ran `localgen plan` into
    ModuleNotFoundError: numpy."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {
        _normal(re.split(r"[\s<>=!~;\[]", d, maxsplit=1)[0]) for d in project["dependencies"]
    }
    distributions = metadata.packages_distributions()
    missing = {}
    for module, files in sorted(_imports().items()):
        if module in EXTRAS:
            continue
        names = {_normal(d) for d in distributions.get(module, [module])}
        if not names & declared:
            missing[module] = sorted(files)[:3]
    assert not missing, f"imported but not in pyproject's dependencies: {missing}"
    assert set(_imports()) >= EXTRAS, "an extra no longer imported: drop it from EXTRAS"


def test_every_subpackage_ships_in_the_wheel() -> None:
    """localgen.documents was missing from [tool.setuptools] packages."""
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in PACKAGE.rglob("__init__.py")}
    assert found - listed == set()


# What the engines print while they load, which --quiet must silence: the weight-loading
# bar (tqdm's switch, which vLLM overrides, so it is passed on as use_tqdm_on_load), torch's
# C++ warnings ("[W ...] Warning: NUMA binding ..."), vLLM's log lines.
QUIET_ENV = {"TQDM_DISABLE": "1", "TORCH_CPP_LOG_LEVEL": "ERROR", "VLLM_LOGGING_LEVEL": "ERROR"}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables and loggers the commands set, restored after the test."""
    for name in QUIET_ENV:
        monkeypatch.delenv(name, raising=False)
    for name in ("vllm", "torch", "transformers"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)


@pytest.mark.usefixtures("clean_env")
def test_quiet_silences_the_engines_loading_chatter(tmp_path: Path) -> None:
    args = ["generate", str(EXAMPLE_TASK), "-n", "1", "--engine", "fake", "--out"]
    result = CliRunner().invoke(cli, [*args, str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert {name: os.environ.get(name) for name in QUIET_ENV} == QUIET_ENV
    assert logging.getLogger("vllm").getEffectiveLevel() >= logging.ERROR
    from localgen.engines.vllm_setup import llm_options, load_progress

    assert load_progress() is False
    options = llm_options(Path("/m"), "guidance", 2048, 0, 1, on_gpu=False, progress=False)
    assert options["use_tqdm_on_load"] is False


@pytest.mark.usefixtures("clean_env")
def test_without_quiet_the_loading_bar_stays_but_torch_warnings_do_not(tmp_path: Path) -> None:
    args = ["generate", str(EXAMPLE_TASK), "-n", "1", "--engine", "fake", "--out"]
    result = CliRunner().invoke(cli, [*args, str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "TQDM_DISABLE" not in os.environ
    assert os.environ.get("TORCH_CPP_LOG_LEVEL") == "ERROR"  # only -v shows them
    from localgen.engines.vllm_setup import llm_options, load_progress

    assert load_progress() is True
    options = llm_options(Path("/m"), "guidance", 2048, 0, 1, on_gpu=False)
    assert options["use_tqdm_on_load"] is True


def test_a_writer_that_fails_removes_only_a_lock_file_it_made(tmp_path: Path) -> None:
    """A refused folder kept the .localgen.lock of the command that refused it."""
    from localgen.errors import OutputError
    from localgen.locks import LOCK_FILE, writing

    lock = tmp_path / LOCK_FILE
    with pytest.raises(OutputError), writing(tmp_path, "generate"):
        assert lock.is_file()
        raise OutputError("refused")
    assert not lock.exists()
    with writing(tmp_path, "generate"):
        pass
    assert lock.is_file()  # a run's lock file stays (see localgen.locks)
    with pytest.raises(OutputError), writing(tmp_path, "generate"):
        raise OutputError("failed")
    assert lock.is_file()  # an earlier command made it: not this one's to remove
