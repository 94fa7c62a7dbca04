"""The shape every generated row must have, the grammar that makes the model write it,
and the token budget that keeps it whole.

A row is the JSON object {"text": <string>, "label": <the requested label>}. The label is
fixed per request, so a row cannot carry a label other than the one asked for. `text` may
hold any Unicode text: every script, any punctuation (`" \\ € § – „`), line breaks and
tabs; other control characters stay out. It starts with a character that is not a space, a
double quote or a punctuation mark that small models like to open with (", " or "..."),
and has between
`MIN_TEXT_CHARS` and `max_chars` characters of decoded text.

Three forms of that one contract:

- `json_schema`: the contract itself, used to validate every row, and sent as is where a
  server takes a JSON schema (`--engine openai --backend json_schema`).
- `regex`: compact JSON with the keys in order, the text written with the standard JSON
  escapes (`\\"`, `\\\\`, `\\n`, `\\t`; every other character as itself). One grammar that
  guidance (llguidance), outlines and xgrammar all accept, exact in every respect,
  length included; llguidance and outlines follow it at speed (xgrammar does not, below).
- `ebnf`: for xgrammar, a strict subset: any Unicode text but no `"`, `\\`, line break
  or tab, so that no escape is ever written. xgrammar's matcher is fast on a bounded
  repetition of one character class, but takes 20-700 ms per token and sequence on any
  bounded repetition of an escape-or-character choice (`char{9,3999}`), and with no bound
  a small model often never closes the string (20 of 64 rows ran into max_tokens).
  `bench/grammar.py` measures all of this.

The budget: with byte-level BPE every token is at least one byte, so a row never needs
more tokens than its longest possible JSON has bytes (4 per character of UTF-8).
`max_tokens` is that bound; where the context cannot hold it the planner lowers it, and a
completion that stops on length is a failed attempt, never a row. This module does not
talk to an engine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import jsonschema

MIN_TEXT_CHARS = 10  # shorter "texts" are almost always the model giving up
MAX_TEXT_CHARS = 20_000  # the most a task may ask for (600 words need about 4,000)
# Decoded characters `text` never holds: control characters but tab and line feed.
EXCLUDED = r"\x00-\x08\x0b-\x1f\x7f-\x9f"  # as class ranges
# Characters a text does not start with: whitespace, a backslash, punctuation small models
# open with ('-' too: `_none_of` puts it last, where it is a literal), and a double quote:
# Qwen2.5-0.5B, let open a text with one, wrote `", "label": "..."` into it.
NOT_FIRST = ' \u00a0\u3000\\\\,.;:!?)…"'
BYTES_PER_CHAR = 4  # the longest character in UTF-8; an escape is 2 bytes
# Bytes of {"text":"","label":""} plus slack for the end-of-sequence token.
_JSON_OVERHEAD = len('{"text":"","label":""}') + 2


def _label_json(label: str) -> str:
    """The label as it appears between the quotes of compact JSON."""
    return json.dumps(label, ensure_ascii=False)[1:-1]


def _none_of(chars: str, dash: bool = False) -> str:
    """A negated character class, in the syntax Python, Rust (llguidance, outlines) and
    xgrammar share."""
    return f"[^{chars}{'-' if dash else ''}]"


def _ebnf_literal(text: str) -> str:
    """`text` as a quoted EBNF string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _regex_literal(text: str) -> str:
    """`text` as a regex that matches it exactly (the dialects differ in what they allow
    escaped, so only metacharacters are escaped)."""
    return "".join("\\" + c if c in r"\.^$|?*+()[]{}" else c for c in text)


# The first character, decoded and as written: the same, since none of it needs an escape.
_FIRST = _none_of("\\t\\n" + NOT_FIRST + EXCLUDED, dash=True)
_UNESCAPED = r"\"\\\x00-\x1f\x7f-\x9f"  # what JSON must escape, and the excluded


@dataclass(frozen=True)
class RowSchema:
    label: str
    max_chars: int
    budget: int | None = None  # max_tokens when the context cannot hold the full bound

    def __post_init__(self) -> None:
        if not MIN_TEXT_CHARS <= self.max_chars <= MAX_TEXT_CHARS:
            raise ValueError(f"max_chars must be {MIN_TEXT_CHARS}..{MAX_TEXT_CHARS}")

    @cached_property
    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "text": {
                    "type": "string",
                    "minLength": MIN_TEXT_CHARS,
                    "maxLength": self.max_chars,
                    "pattern": f"^{_FIRST}{_none_of(EXCLUDED)}*$",
                },
                "label": {"type": "string", "enum": [self.label]},
            },
            "required": ["text", "label"],
            "additionalProperties": False,
        }

    @cached_property
    def regex(self) -> str:
        """The whole row as one regex, exact (length included)."""
        char = f'(?:{_none_of(_UNESCAPED)}|\\\\["\\\\nt])'
        label = _regex_literal(_label_json(self.label))
        return (
            f'\\{{"text":"{_FIRST}{char}{{{MIN_TEXT_CHARS - 1},{self.max_chars - 1}}}'
            f'","label":"{label}"\\}}'
        )

    @property
    def ebnf(self) -> str:
        """The row for xgrammar: the texts that need no escape (see the module docstring)."""
        label = _label_json(self.label).replace("\\", "\\\\").replace('"', '\\"')
        return (
            f'root ::= "{{\\"text\\":\\"" {_FIRST} '
            f"{_none_of(_UNESCAPED)}{{{MIN_TEXT_CHARS - 1},{self.max_chars - 1}}} "
            f'"\\",\\"label\\":\\"{label}\\"}}"'
        )

    @property
    def token_bound(self) -> int:
        """Tokens that always suffice: one per byte of the longest valid row."""
        return (
            _JSON_OVERHEAD
            + len(_label_json(self.label).encode())
            + (BYTES_PER_CHAR * self.max_chars)
        )

    @property
    def max_tokens(self) -> int:
        return self.token_bound if self.budget is None else min(self.budget, self.token_bound)

    @property
    def whole(self) -> bool:
        """Whether max_tokens is the full bound, so no row can be cut off."""
        return self.max_tokens == self.token_bound

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


@dataclass(frozen=True)
class LabelChoice:
    """The answer of the label check: {"label": <one of `labels`>}, nothing else.

    The same three forms as a row, so every engine and backend sends it unchanged. A
    row's own label is the one the check is asked about (`label`); the answer may be any.
    """

    labels: tuple[str, ...]
    label: str  # the label of the row being checked

    @cached_property
    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"label": {"type": "string", "enum": list(self.labels)}},
            "required": ["label"],
            "additionalProperties": False,
        }

    # An engine that can start the model's reply itself (vLLM: the chat's last message,
    # continued) writes REPLY_START into the prompt and constrains only the rest: the
    # model reads the same tokens, but they are computed with the prompt instead of in
    # decoding steps of their own (on the example task, 3-4 steps instead of 7).
    REPLY_START = '{"label":"'

    @cached_property
    def regex(self) -> str:
        return _regex_literal(self.REPLY_START) + self.rest_regex

    @property
    def ebnf(self) -> str:
        return f"root ::= {_ebnf_literal(self.REPLY_START)} {self._rest_ebnf}"

    @cached_property
    def rest_regex(self) -> str:
        """`regex` after REPLY_START."""
        choices = "|".join(_regex_literal(_label_json(name)) for name in self.labels)
        return f'(?:{choices})"\\}}'

    @property
    def rest_ebnf(self) -> str:
        """`ebnf` after REPLY_START."""
        return f"root ::= {self._rest_ebnf}"

    @property
    def _rest_ebnf(self) -> str:
        quoted = " | ".join(_ebnf_literal(_label_json(n)) for n in self.labels)
        closing = _ebnf_literal('"}')
        return f"({quoted}) {closing}"

    @property
    def max_tokens(self) -> int:
        longest = max(len(_label_json(n).encode()) for n in self.labels)
        return len('{"label":""}') + longest + 2

    def parse(self, raw: str) -> tuple[dict[str, Any] | None, str]:
        try:
            answer = json.loads(raw)
        except ValueError:
            return None, "not valid JSON" if raw else "empty output"
        if not isinstance(answer, dict) or answer.get("label") not in self.labels:
            return None, f"not one of the labels: {raw[:80]}"
        return answer, ""
