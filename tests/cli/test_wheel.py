"""A wheel install works on its own: `pip install localgen-*.whl`, then plan and generate.

The wheel is built from a copy of the source tree and installed into a fresh virtual
environment that sees this environment's dependencies (torch, polars, ...) but not the
source checkout, so a file the wheel does not ship (the prompt templates, the report
template) makes the installed command fail here.
"""

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import polars as pl

from localgen.planning.prompts import PromptLibrary
from tests.helpers import EXAMPLE_TASK, ROOT

SOURCES = ("pyproject.toml", "README.md", "localgen", "prompts")


def _run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True)


def test_wheel_installs_and_runs_plan_and_generate(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(ROOT / name, source / name)
    built = _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "-w", tmp_path / "dist", source, cwd=tmp_path,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("localgen-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                   cwd=tmp_path).stdout.strip()  # fmt: skip
    # The dependencies (and pip) from this environment; its .pth files, among them the
    # editable install of the checkout, are not read from a path listed this way.
    Path(purelib, "localgen-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = _run(python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel,
                     cwd=tmp_path)  # fmt: skip
    assert installed.returncode == 0, installed.stderr

    where = _run(python, "-c", "import localgen; print(localgen.__file__)", cwd=tmp_path)
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr
    localgen = venv / "bin" / "localgen"
    plan = _run(localgen, "plan", EXAMPLE_TASK, "-n", "2", cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert "rows planned" in plan.stdout and "--- " in plan.stdout  # a rendered prompt

    out = tmp_path / "run"
    generated = _run(localgen, "generate", EXAMPLE_TASK, "-n", "2", "--engine", "fake",
                     "--quiet", "--out", out, cwd=tmp_path)  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    rows = pl.read_parquet(out / "synthetic.parquet")
    assert rows.height > 0
    # The installed templates are the checkout's: same names, same hashes in the rows.
    template = PromptLibrary().get(rows["template"][0])
    assert rows["template_hash"][0] == template.hash
