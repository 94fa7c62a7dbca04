"""Text as curation and the report compare it: word tokens, n-grams, and the normal form
two texts share when they are exact duplicates.

A word is a run of letters and digits of any script (with inner apostrophes: "don't").
Scripts written without spaces between words (Chinese, Japanese, Thai, Lao, Khmer,
Myanmar) have no such runs, so each of their characters is a token of its own: distinct-n,
leakage and length then count character n-grams there, not whole sentences."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

# Han, kana, CJK compatibility ideographs, Thai, Lao, Myanmar, Khmer.
NO_SPACE = (
    "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff"
)
_RUN = rf"[^\W_{NO_SPACE}]+"
_WORD = re.compile(rf"[{NO_SPACE}]|{_RUN}(?:'{_RUN})*")
_NOT_WORD = re.compile(r"[\W_]+")


def words(text: str) -> list[str]:
    """Lower-case word tokens: the unit of distinct-n, leakage and length."""
    return _WORD.findall(text.casefold().replace("\u2019", "'"))


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def normalize(text: str) -> str:
    """The form two texts must share to be exact duplicates: Unicode NFKC, case folded,
    punctuation and spacing collapsed."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _NOT_WORD.sub(" ", folded).strip()
