"""`localgen models import` on a real GGUF file: the one the built-in model ships as."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from localgen.cli import cli
from localgen.models import resolve as models
from localgen.models.checksums import verify_checksums


def _cli(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args))


def test_import_converts_a_real_gguf_into_a_loadable_verified_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALGEN_HOME", str(tmp_path / "home"))
    gguf = models.builtin_gguf()  # the GGUF file the built-in model ships as
    result = _cli("models", "import", str(gguf), "--name", "smol")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "home" / "models" / "smol"
    assert verify_checksums(folder) == []
    ref = models.resolve_model("smol")
    assert ref.path == folder.resolve()
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["num_hidden_layers"] == 30
    listed = json.loads(_cli("models", "list", "--json").stdout)
    assert {"smol", models.BUILTIN_NAME} <= {m["name"] for m in listed}
