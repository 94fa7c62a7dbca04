"""A text classifier: a sentence encoder and a linear head, saved as a model folder.

The head is multinomial logistic regression. The objective is scikit-learn's
`LogisticRegression(C=c, class_weight="balanced")`: the sum of per-row cross-entropies,
each weighted n / (k * rows of its label) so that a rare label counts as much as a common
one, plus ||W||^2 / (2c). It is solved with L-BFGS in float64, so the same data gives
the same weights. Curation uses it as a second opinion on labels; `localgen train` puts
it on a frozen encoder (or starts fine-tuning from it, see `localgen.classify.finetune`).

A model folder holds `model.json` (format version, labels, the encoder and its
fingerprint, the resolved training config), `labels.json`, `head.safetensors` and, for a
fine-tuned model, the encoder itself under `encoder/`. A frozen model names its encoder
instead of copying it: the built-in one by name, so the folder moves between machines,
any other by path. Loading checks the encoder's fingerprint.
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
from localgen.errors import DataError, ModelError

MODEL_FORMAT = 1
MODEL_FILE = "model.json"
LABELS_FILE = "labels.json"
HEAD_FILE = "head.safetensors"
ENCODER_DIR = "encoder"
BUILTIN = "builtin"


@dataclass(frozen=True)
class LinearHead:
    """Weights (k, d) and bias (k) over `labels`, in that order."""

    labels: tuple[str, ...]
    weight: np.ndarray
    bias: np.ndarray

    def proba(self, vectors: np.ndarray) -> np.ndarray:
        """Probabilities, shape (n, k), columns in the order of `labels`."""
        logits = vectors.astype(np.float64) @ self.weight.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, vectors: np.ndarray) -> list[str]:
        return [self.labels[i] for i in self.proba(vectors).argmax(axis=1)]


def balanced_weights(y: np.ndarray, k: int) -> np.ndarray:
    """Per-row weights n / (k * count of the row's label)."""
    counts = np.bincount(y, minlength=k).astype(np.float64)
    per_label = len(y) / (k * np.maximum(counts, 1.0))
    return per_label[y]


def fit_linear(
    vectors: np.ndarray,
    labels: Sequence[str],
    label_names: Sequence[str] | None = None,
    c: float = 1.0,
    balanced: bool = True,
    max_iter: int = 200,
) -> LinearHead:
    """Fit the head on `vectors` (n, d) with one label per row."""
    import torch

    names = tuple(label_names) if label_names is not None else tuple(sorted(set(labels)))
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise DataError(f"labels not among the classifier's labels: {', '.join(unknown[:5])}")
    if len(vectors) == 0:
        raise DataError("no rows to train on")
    if len(set(labels)) < 2:
        raise DataError("a classifier needs rows of at least two labels")
    y = np.array([index[label] for label in labels])
    k = len(names)
    sample = balanced_weights(y, k) if balanced else np.ones(len(y))

    x_t = torch.from_numpy(np.asarray(vectors, dtype=np.float64))
    y_t = torch.from_numpy(y)
    s_t = torch.from_numpy(sample)
    w = torch.zeros((k, x_t.shape[1]), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [w, b], max_iter=max_iter, tolerance_grad=1e-7, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        losses = torch.nn.functional.cross_entropy(x_t @ w.T + b, y_t, reduction="none")
        loss = (losses * s_t).sum() + (w * w).sum() / (2 * c)
        loss.backward()
        return loss

    optimizer.step(closure)
    return LinearHead(names, w.detach().numpy().copy(), b.detach().numpy().copy())


def stratified_folds(labels: Sequence[str], folds: int, seed: int = 0) -> list[np.ndarray]:
    """Row indices of each fold; every label is spread over the folds round-robin."""
    rng = np.random.default_rng(seed)
    out: list[list[int]] = [[] for _ in range(folds)]
    position = 0
    for name in sorted(set(labels)):
        rows = [i for i, label in enumerate(labels) if label == name]
        for i in rng.permutation(rows):
            out[position % folds].append(int(i))
            position += 1
    return [np.array(sorted(f), dtype=np.int64) for f in out if f]


def cross_val_accuracy(
    vectors: np.ndarray, labels: Sequence[str], folds: int = 5, seed: int = 0
) -> float:
    """Accuracy of `fit_linear` on held-out folds of the data, over all rows."""
    labels = list(labels)
    correct = evaluated = 0
    for held in stratified_folds(labels, folds, seed):
        train = np.setdiff1d(np.arange(len(labels)), held)
        train_labels = [labels[i] for i in train]
        if len(set(train_labels)) < 2:
            continue
        head = fit_linear(vectors[train], train_labels, sorted(set(labels)))
        predicted = head.predict(vectors[held])
        correct += sum(p == labels[i] for p, i in zip(predicted, held, strict=True))
        evaluated += len(held)
    return correct / evaluated if evaluated else 0.0


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

    def save(self, folder: Path, encoder_model: Any = None, tokenizer: Any = None) -> None:
        """Write the model folder whole or not at all (built aside, then renamed).

        `encoder_model`/`tokenizer` (transformers objects) are saved into the folder: a
        fine-tuned encoder travels with its head."""
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
            (staging / LABELS_FILE).write_text(json.dumps(list(self.labels), indent=2) + "\n")
            payload = {
                "format_version": MODEL_FORMAT,
                "kind": "localgen-classifier",
                "labels": list(self.labels),
                "encoder": encoder_entry,
                "head": HEAD_FILE,
                **self.info,
            }
            (staging / MODEL_FILE).write_text(json.dumps(payload, indent=2) + "\n")
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
        if version != MODEL_FORMAT:
            raise ModelError(
                f"{folder}: model format {version}; this localgen reads format {MODEL_FORMAT}"
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
        info = {k: v for k, v in meta.items() if k in ("config", "training", "created_at")}
        return cls(path, LinearHead(labels, weight, bias), name, info)
