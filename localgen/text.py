"""Text as curation and the report compare it: word tokens, n-grams, and the normal form
two texts share when they are exact duplicates."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

_WORD = re.compile(r"[a-z0-9']+")
_NOT_WORD = re.compile(r"[\W_]+")


def words(text: str) -> list[str]:
    """Lower-case word tokens: the unit of distinct-n, leakage and length."""
    return _WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def normalize(text: str) -> str:
    """The form two texts must share to be exact duplicates: Unicode NFKC, case folded,
    punctuation and spacing collapsed."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _NOT_WORD.sub(" ", folded).strip()
