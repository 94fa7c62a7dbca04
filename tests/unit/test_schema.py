import json
import re

import pytest

from localgen.planning.schema import TEXT_PUNCTUATION, RowSchema


def _row(text: str, label: str = "billing") -> str:
    return json.dumps({"text": text, "label": label}, separators=(",", ":"))


@pytest.mark.parametrize(
    ("raw", "ok"),
    [
        (_row("Please refund my invoice."), True),
        (_row("x" * 40), True),
        (_row("x" * 41), False),  # longer than max_chars
        (_row("Too short"), False),  # 9 characters < 10
        (_row(", starts with a comma"), False),
        (_row("Caf\u00e9 bill is wrong"), False),  # non-ASCII
        (_row('He said "hi" to me'), False),  # a quote would need escaping
        (_row("Please refund me", label="bug"), False),
        ('{"text":"Please refund me","label":"billing","extra":1}', False),
        ('{"text":"Please refund me"}', False),
        ('{"text":"Please refund', False),
        ("", False),
    ],
)
def test_parse_accepts_exactly_the_schema(raw: str, ok: bool) -> None:
    row, reason = RowSchema("billing", 40).parse(raw)
    assert (row is not None) == ok
    assert (reason == "") == ok


def test_ebnf_and_json_schema_describe_the_same_text() -> None:
    schema = RowSchema("account access", 30)
    pattern = schema.json_schema["properties"]["text"]["pattern"]
    ebnf = schema.ebnf
    assert '\\"label\\":\\"account access\\"' in ebnf
    # Same first class, same punctuation, same bounds in both.
    assert re.fullmatch(pattern, "A" + TEXT_PUNCTUATION + "b" * 4)
    assert "{9,29}" in pattern and "{9,29}" in ebnf


def test_max_tokens_covers_the_longest_row_byte_for_byte() -> None:
    schema = RowSchema("r\u00e9sum\u00e9", 50)
    longest = _row("A" * 50, label="r\u00e9sum\u00e9").replace("\\u00e9", "\u00e9")
    # One token per byte is the worst case for byte-level BPE; plus an end token.
    assert schema.max_tokens >= len(longest.encode()) + 1
    assert schema.max_tokens <= len(longest.encode()) + 3
