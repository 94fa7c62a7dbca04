"""Checksum manifests of model folders: the SHA-256 of every file, recorded once on a
trusted copy, checked before a model is used or after it crossed an air gap."""

from __future__ import annotations

import json
from pathlib import Path

from localgen.artifacts import sha256_file

CHECKSUMS_FILE = "localgen-checksums.json"
FORMAT_VERSION = 1


def checksums(folder: Path) -> dict[str, str]:
    """The SHA-256 of every file of a model folder but the manifest itself."""
    return {
        p.name: sha256_file(p)
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != CHECKSUMS_FILE
    }


def manifest_text(sums: dict[str, str]) -> str:
    return json.dumps({"format_version": FORMAT_VERSION, "files": sums}, indent=2) + "\n"


def write_checksums(folder: Path) -> dict[str, str]:
    """Record the SHA-256 of every file in a model folder."""
    sums = checksums(folder)
    (folder / CHECKSUMS_FILE).write_text(manifest_text(sums))
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
