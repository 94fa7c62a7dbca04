"""The shape every generated row must have, and the token budget that keeps it whole.

A row is the JSON object {"text": <string>, "label": <the requested label>}. The label is
fixed per request, so a row cannot carry a label other than the one asked for. `text` is
limited to printable ASCII without `"` and `\\` (no JSON escapes are ever needed) and to
`max_chars` characters. With byte-level BPE every ASCII character is at most one token,
so a row can never need more than its longest possible JSON in bytes: that is the
`max_tokens` we ask for, and generation cannot be cut off mid-row.

This module builds the JSON schema (the contract, used by Outlines and for validation)
and the equivalent EBNF grammar (used with xgrammar, whose JSON-schema compiler rejects
bounded patterns longer than about 200 characters). It does not talk to an engine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import jsonschema

# Characters allowed in `text`. The two characters that JSON would have to escape are out;
# so are control characters and non-ASCII (see the module docstring for why).
TEXT_PUNCTUATION = " ,.:;!?'()&%$#@+/*=_~<>-"
TEXT_CLASS_REGEX = "[A-Za-z0-9" + TEXT_PUNCTUATION + "]"  # '-' last: a literal in a class
TEXT_CLASS_EBNF = "[A-Za-z0-9" + TEXT_PUNCTUATION[:-1] + "\\-]"
TEXT_FIRST_CLASS = "[A-Za-z0-9]"  # small models otherwise often open with ", " or "..."
MIN_TEXT_CHARS = 10  # shorter "texts" are almost always the model giving up
# Bytes of {"text":"","label":""} plus slack for the end-of-sequence token.
_JSON_OVERHEAD = len('{"text":"","label":""}') + 2


@dataclass(frozen=True)
class RowSchema:
    label: str
    max_chars: int

    @cached_property
    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "text": {
                    "type": "string",
                    "pattern": f"^{TEXT_FIRST_CLASS}{self._rest(TEXT_CLASS_REGEX)}$",
                },
                "label": {"type": "string", "enum": [self.label]},
            },
            "required": ["text", "label"],
            "additionalProperties": False,
        }

    @property
    def ebnf(self) -> str:
        """The same language as an EBNF grammar, compact JSON with the keys in order."""
        label = json.dumps(self.label, ensure_ascii=False)[1:-1].replace('"', '\\"')
        return (
            f'root ::= "{{\\"text\\":\\"" text "\\",\\"label\\":\\"{label}\\"}}"\n'
            f"text ::= {TEXT_FIRST_CLASS} {self._rest(TEXT_CLASS_EBNF)}"
        )

    def _rest(self, char_class: str) -> str:
        return f"{char_class}{{{MIN_TEXT_CHARS - 1},{self.max_chars - 1}}}"

    @property
    def max_tokens(self) -> int:
        """Tokens that always suffice: one per byte of the longest valid row."""
        return _JSON_OVERHEAD + len(self.label.encode()) + self.max_chars

    def parse(self, raw: str) -> tuple[dict[str, Any] | None, str]:
        """The row, or None and why it is not valid."""
        try:
            row = json.loads(raw)
        except ValueError:
            return None, "not valid JSON (truncated?)" if raw else "empty output"
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(row))
        if error is not None:
            return None, f"schema: {error.message[:120]}"
        return row, ""

    @cached_property
    def _validator(self) -> jsonschema.protocols.Validator:
        cls = jsonschema.validators.validator_for(self.json_schema)
        return cls(self.json_schema)
