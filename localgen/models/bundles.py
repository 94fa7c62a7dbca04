"""Model management for air-gapped sites: list the local models, import a GGUF file,
bundle a model folder into one archive and unbundle it on the other side, verified.

Nothing here downloads: a model crosses the gap as a file the user carries.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import time
from pathlib import Path

from localgen.errors import ModelError
from localgen.models.checksums import CHECKSUMS_FILE, checksums, manifest_text, verify_checksums
from localgen.models.resolve import (
    BUILTIN_NAME,
    builtin_model,
    convert_gguf,
    local_folder,
    localgen_home,
)
from localgen.progress import Say, silent

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
        folder = local_folder(str(builtin_model(say=silent).path))
    else:
        assert spec is not None
        folder = local_folder(spec)
    if out.suffix not in BUNDLE_SUFFIXES:
        raise ModelError(f"the bundle file must end in .tar, got {out.name}")
    if (folder / CHECKSUMS_FILE).is_file():
        damaged = verify_checksums(folder)
        if damaged:
            raise ModelError(f"{folder}: {', '.join(damaged[:5])} differ from {CHECKSUMS_FILE}")
        sums = json.loads((folder / CHECKSUMS_FILE).read_text())["files"]
    else:
        sums = checksums(folder)
    manifest = manifest_text(sums)
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


def _size(n: object) -> str:
    if not isinstance(n, int):
        return "-"
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def models_table(found: list[dict[str, object]]) -> str:
    """`localgen models list` for people: one aligned line per model, its path last."""
    rows = [("name", "source", "size", "architecture", "checksums", "path")]
    for m in found:
        rows.append(
            (
                str(m["name"]),
                str(m["source"]),
                _size(m["size_bytes"]) if m["prepared"] else "not prepared",
                str(m["architecture"]),
                "yes" if m["checksums"] else "no",
                str(m["path"]),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows
    )


def bundle_message(archive: Path, files: int, size: int) -> str:
    return f"{archive}: {files} files, {_size(size)}; unpack with `localgen models unbundle`"
