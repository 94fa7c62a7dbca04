"""A text classifier: a sentence encoder and a linear head, saved as a model folder.

The head is the linear head of `localgen.vectors.linear`; `localgen train` puts it on a
frozen encoder (or starts fine-tuning from it, see `localgen.classify.finetune`).

A model folder holds `model.json` (format version, the training method, labels, the
encoder and its fingerprint, the resolved training config), `labels.json`,
`head.safetensors` and, for a model whose encoder was trained (`fine-tune`, `setfit`),
the tuned encoder itself under `encoder/`, with its own fingerprint. A frozen model names
its encoder instead of copying it: the built-in one by name, so the folder moves between
machines, any other by path. Loading checks the encoder's fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from localgen.artifacts import update_hash
from localgen.errors import ModelError
from localgen.vectors.linear import LinearHead

MODEL_FORMAT = 2  # 2 added `method`; format 1 folders (frozen or fine-tuned) still load
READABLE_FORMATS = (1, 2)
MODEL_FILE = "model.json"
LABELS_FILE = "labels.json"
HEAD_FILE = "head.safetensors"
ENCODER_DIR = "encoder"
BUILTIN = "builtin"


def encoder_fingerprint(folder: Path) -> str:
    """SHA-256 over an encoder folder's config and weight files (16 hex digits)."""
    h = hashlib.sha256()
    files = [
        folder / "config.json",
        *sorted(folder.glob("*.safetensors")),
        *sorted(folder.glob("*.bin")),
    ]
    for path in files:
        h.update(path.name.encode())
        update_hash(h, path)
    return h.hexdigest()[:16]


def resolve_encoder(spec: str | Path | None) -> tuple[str, Path]:
    """(how model.json names the encoder, its folder): None is the built-in encoder."""
    from localgen.vectors.encoder import default_encoder_path

    if spec is None or str(spec) == BUILTIN:
        return BUILTIN, default_encoder_path()
    path = Path(spec).expanduser().resolve()
    if not (path / "config.json").is_file():
        raise ModelError(f"--encoder {spec}: not a Hugging Face model folder (no config.json)")
    return str(path), path


def check_model_out(folder: Path) -> None:
    """Fail unless `folder` can take a model: absent, empty, or holding a model."""
    if folder.exists() and not folder.is_dir():
        raise ModelError(f"--out {folder} is a file; give a folder for the model")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MODEL_FILE).is_file():
        raise ModelError(f"{folder} is not empty and holds no localgen model; choose another --out")


@dataclass
class TextClassifier:
    """An encoder folder and a linear head over its unit-length sentence vectors."""

    encoder_path: Path
    head: LinearHead
    encoder_name: str = BUILTIN  # as model.json records it: "builtin", a path or "encoder/"
    info: dict[str, Any] = field(default_factory=dict)  # config and training summary
    _encoder: Any = None

    @property
    def method(self) -> str:
        """How it was trained: frozen, fine-tune or setfit (format 1 knew only two)."""
        legacy = "fine-tune" if self.encoder_name == ENCODER_DIR else "frozen"
        return str(self.info.get("method") or legacy)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.head.labels

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from localgen.vectors.encoder import Encoder, default_encoder, default_encoder_path

            same = self.encoder_path == default_encoder_path()
            self._encoder = default_encoder() if same else Encoder(self.encoder_path)
        return self._encoder

    def proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.head.proba(self.encoder.encode(texts))

    def predict(self, texts: Sequence[str]) -> list[str]:
        return self.head.predict(self.encoder.encode(texts))

    def save(
        self,
        folder: Path,
        encoder_model: Any = None,
        tokenizer: Any = None,
        tables: dict[str, Any] | None = None,
    ) -> None:
        """Write the model folder whole or not at all (built aside, then renamed).

        `encoder_model`/`tokenizer` (transformers objects) are saved into the folder: a
        fine-tuned encoder travels with its head. `tables`: file name -> polars frame,
        written as Parquet beside the model (what training recorded row by row)."""
        from safetensors.numpy import save

        check_model_out(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        # os.mkdir and write_bytes honour the umask (mkdtemp would make the folder 0700),
        # so a model shared with a team is readable like any file its owner writes.
        staging = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:12]}.tmp")
        os.mkdir(staging)
        try:
            encoder_entry: dict[str, Any] = {"name": self.encoder_name}
            if encoder_model is not None:
                encoder_model.save_pretrained(staging / ENCODER_DIR)
                tokenizer.save_pretrained(staging / ENCODER_DIR)
                encoder_entry = {"name": ENCODER_DIR}
                fingerprint_of = staging / ENCODER_DIR
            else:
                fingerprint_of = self.encoder_path
            encoder_entry["fingerprint"] = encoder_fingerprint(fingerprint_of)
            (staging / HEAD_FILE).write_bytes(
                save({"weight": self.head.weight, "bias": self.head.bias})
            )
            (staging / LABELS_FILE).write_text(
                json.dumps(list(self.labels), indent=2, ensure_ascii=False) + "\n"
            )
            payload = {
                "format_version": MODEL_FORMAT,
                "kind": "localgen-classifier",
                "method": self.method,
                "labels": list(self.labels),
                "encoder": encoder_entry,
                "head": HEAD_FILE,
                **{k: v for k, v in self.info.items() if k != "method"},
            }
            (staging / MODEL_FILE).write_text(
                json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
            )
            for name, table in (tables or {}).items():
                table.write_parquet(staging / name)
            old = None
            if folder.exists():
                old = folder.with_name(f".{folder.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                folder.rename(old)
            staging.rename(folder)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    @classmethod
    def load(cls, folder: Path) -> TextClassifier:
        """Read a model folder; a clear error when it is not one, or its encoder changed."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        meta_path = folder / MODEL_FILE
        if not meta_path.is_file():
            what = "not found" if not folder.exists() else f"has no {MODEL_FILE}"
            raise ModelError(f"model folder {folder} {what}; train one with localgen train")
        try:
            meta = json.loads(meta_path.read_text())
            version = meta["format_version"]
            labels = tuple(meta["labels"])
            name = meta["encoder"]["name"]
            fingerprint = meta["encoder"]["fingerprint"]
        except (ValueError, KeyError, TypeError):
            raise ModelError(f"{meta_path}: not a localgen model description") from None
        if version not in READABLE_FORMATS:
            raise ModelError(
                f"{folder}: model format {version}; this localgen reads formats "
                f"{', '.join(map(str, READABLE_FORMATS))}"
            )
        try:
            tensors = load_file(str(folder / meta.get("head", HEAD_FILE)))
        except (OSError, SafetensorError) as e:
            raise ModelError(f"{folder}: cannot read the head weights: {e}") from None
        weight, bias = tensors.get("weight"), tensors.get("bias")
        if (
            weight is None
            or bias is None
            or weight.shape[0] != len(labels)
            or bias.shape != (len(labels),)
        ):
            raise ModelError(f"{folder}: head weights do not match {len(labels)} labels")
        if name == ENCODER_DIR:
            path = folder / ENCODER_DIR
        else:
            _, path = resolve_encoder(name)
        if not (path / "config.json").is_file():
            raise ModelError(f"{folder}: its encoder {path} is missing")
        if encoder_fingerprint(path) != fingerprint:
            raise ModelError(
                f"{folder}: the encoder at {path} is not the one the model was trained with "
                "(fingerprint differs); retrain the model"
            )
        keys = ("method", "config", "training", "created_at")
        info = {k: v for k, v in meta.items() if k in keys}
        return cls(path, LinearHead(labels, weight, bias), name, info)
