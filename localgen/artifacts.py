"""What every artifact localgen writes shares: atomic writes (text, JSON, tables), the
creation timestamp, the software versions, and SHA-256 checksums of files.

Every file is written to a temporary name in its folder, flushed to disk and renamed, so
a killed process leaves whole files or none. This module does not know which files a
stage writes; each stage names its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl

from localgen.errors import OutputError

_HASH_BLOCK = 1 << 20  # bytes read at a time: weights files are gigabytes


def utc_now() -> str:
    """The timestamp every artifact records: UTC, ISO 8601, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def update_hash(h: Any, path: Path) -> None:
    """Feed a file's bytes to a hashlib object, a block at a time."""
    with path.open("rb") as f:
        for block in iter(lambda: f.read(_HASH_BLOCK), b""):
            h.update(block)


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, hex."""
    h = hashlib.sha256()
    update_hash(h, path)
    return h.hexdigest()


def software_versions(*dists: str) -> dict[str, str]:
    """localgen's, Python's and the installed ones of `dists`: for manifests."""
    from localgen import __version__

    out = {"localgen": __version__, "python": platform.python_version()}
    for dist in dists:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def failure_reason(e: BaseException) -> str:
    """Why a read or write failed, in the operating system's words where it gave some
    ("No space left on device"): polars wraps them as "... (os error 28)" in errors of its
    own types, not OSError."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e).strip()
    code = re.search(r"\(os error (\d+)\)", text)
    if code:
        return os.strerror(int(code.group(1)))
    return text.splitlines()[0] if text else type(e).__name__


def write_with(path: Path, write: Callable[[Path], object]) -> None:
    """Write `path` with `write(temporary path)`: a temporary file in the same folder,
    fsync, then a rename over `path`. A failure of the write (a full disk, a quota, a
    folder removed under us) is an OutputError naming `path`, whichever library raised it."""
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OutputError(f"cannot write in {path.parent}: {e.strerror}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        tmp.replace(path)
    except (OSError, pl.exceptions.PolarsError) as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {failure_reason(e)}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    write_with(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: Path, payload: Any) -> None:
    write_text(path, json.dumps(payload, indent=2, default=str, ensure_ascii=False) + "\n")


def write_table(frame: pl.DataFrame, path: Path) -> None:
    """Write a frame as Parquet, JSONL or CSV (by suffix), atomically."""
    if path.suffix == ".jsonl":
        write_with(path, frame.write_ndjson)
    elif path.suffix == ".csv":
        write_with(path, frame.write_csv)
    else:
        write_with(path, frame.write_parquet)
