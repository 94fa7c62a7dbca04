import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localgen.planning.schema import MIN_TEXT_CHARS, RowSchema


def _row(text: str, label: str = "billing") -> str:
    """A row as the model writes it: compact JSON, non-ASCII as itself."""
    return json.dumps({"text": text, "label": label}, ensure_ascii=False, separators=(",", ":"))


@pytest.mark.parametrize(
    ("raw", "ok"),
    [
        (_row("Please refund my invoice."), True),
        (_row("x" * 40), True),
        (_row("x" * 41), False),  # longer than max_chars
        (_row("Too short"), False),  # 9 characters < 10
        (_row(", starts with a comma"), False),
        (_row(" starts with a space"), False),
        (_row("Caf\u00e9 bill is wrong"), True),  # non-ASCII
        (_row('He said "hi" to me'), True),  # a quote, escaped by JSON
        (_row('"Agreement" means it'), False),  # models that open with one write JSON in it
        (_row('1.1 "Agreement" means it'), True),
        (_row("Line one\nline two\there"), True),  # line break and tab
        (_row("49,90 \u20ac \u00a7 3 \u2013 \u201egut\u201c"), True),
        (_row("\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3067\u3059"), True),
        (_row("a bell \x07 rings here"), False),  # other control characters stay out
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


def test_parse_returns_the_decoded_text() -> None:
    text = 'Der "Vertrag" \u00a7 2:\n1. K\u00fcndigung \\ Frist'
    row, _ = RowSchema("K\u00fcndigung", 100).parse(_row(text, "K\u00fcndigung"))
    assert row is not None and row["text"] == text


def test_max_tokens_covers_the_longest_row_byte_for_byte() -> None:
    schema = RowSchema("r\u00e9sum\u00e9", 50)
    longest = _row("\U0001f600" * 50, label="r\u00e9sum\u00e9")  # 4 bytes per character
    # One token per byte is the worst case for byte-level BPE; plus an end token.
    assert schema.max_tokens >= len(longest.encode()) + 1
    assert schema.max_tokens <= len(longest.encode()) + 3
    assert schema.whole
    lowered = RowSchema("billing", 50, budget=100)
    assert lowered.max_tokens == 100 and not lowered.whole


# --- the grammars against the schema, checked with the constraint libraries' own matchers ---

LABEL = "K\u00fcndigung & Co."  # non-ASCII, a regex metacharacter, a space
MAX_CHARS = 24
SCHEMA = RowSchema(LABEL, MAX_CHARS)
# Every character but surrogates: the schema decides which are allowed.
TEXTS = st.text(st.characters(exclude_categories=["Cs"]), max_size=MAX_CHARS + 4)
ROWS = st.one_of(
    TEXTS,
    # Strings the schema accepts, so that both directions are exercised.
    st.builds(
        lambda first, rest: first + rest,
        st.characters(categories=["L", "N"]),
        st.text(
            st.characters(exclude_categories=["Cs", "Cc"]) | st.sampled_from('\n\t"\\'),
            min_size=MIN_TEXT_CHARS - 1,
            max_size=MAX_CHARS - 1,
        ),
    ),
)


def _schema_accepts(text: str) -> bool:
    return SCHEMA.parse(_row(text, LABEL))[0] is not None


@pytest.fixture(scope="module")
def xgrammar_matchers():
    xgr = pytest.importorskip("xgrammar")
    # accept_string checks characters, so any vocabulary will do.
    compiler = xgr.GrammarCompiler(xgr.TokenizerInfo(["a", "b"]), cache_enabled=False)
    regex, ebnf = compiler.compile_regex(SCHEMA.regex), compiler.compile_grammar(SCHEMA.ebnf)

    def accepts(grammar, written: str) -> bool:
        matcher = xgr.GrammarMatcher(grammar, terminate_without_stop_token=True)
        return bool(matcher.accept_string(written)) and matcher.is_terminated()

    return lambda written: (accepts(regex, written), accepts(ebnf, written))


class _ByteVocabulary:
    """One token per byte: what llguidance's matcher needs to check whole strings."""

    eos_token_id = 256
    bos_token_id = None
    tokens = [bytes([i]) for i in range(256)] + [b"<eos>"]

    def __call__(self, data: bytes) -> list[int]:
        return list(data)


@pytest.fixture(scope="module")
def llguidance_matcher():
    llguidance = pytest.importorskip("llguidance")
    tokenizer = llguidance.LLTokenizer(llguidance.TokenizerWrapper(_ByteVocabulary()))
    grammar = llguidance.grammar_from("regex", SCHEMA.regex)

    def accepts(written: str) -> bool:
        matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
        return bool(matcher.consume_tokens(list(written.encode()))) and matcher.is_accepting()

    return accepts


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=ROWS)
def test_the_grammars_accept_what_the_schema_accepts_and_nothing_else(
    xgrammar_matchers, llguidance_matcher, text: str
) -> None:
    written = _row(text, LABEL)  # the standard JSON escapes, everything else as itself
    expected = _schema_accepts(text)
    by_regex, by_ebnf = xgrammar_matchers(written)
    assert by_regex == expected
    assert llguidance_matcher(written) == expected  # vLLM's guidance backend
    # Python's regex engine reads the same regex the same way.
    assert bool(re.fullmatch(SCHEMA.regex, written)) == expected
    # xgrammar's EBNF: the same, less the texts that need an escape.
    assert by_ebnf == (expected and not any(c in text for c in '"\\\n\t'))


@settings(max_examples=300, deadline=None)
@given(
    written=st.text(st.characters(exclude_categories=["Cs"]) | st.sampled_from('\\"n'), max_size=40)
)
def test_what_the_regex_accepts_decodes_to_a_valid_row(llguidance_matcher, written: str) -> None:
    """Raw strings, not only json.dumps output: an escape the schema cannot decode, a
    raw line break or a lone backslash must not match."""
    candidate = '{"text":"' + written + '","label":"' + LABEL + '"}'
    matched = bool(re.fullmatch(SCHEMA.regex, candidate))
    assert llguidance_matcher(candidate) == matched
    if matched:
        assert SCHEMA.parse(candidate)[0] is not None


@pytest.mark.parametrize(
    ("text", "ok"),
    [('Gr\u00fc\u00dfe "x"\n\u00a7 3', True), ("x" * 21, False), (" starts badly", False)],
)
def test_outlines_follows_the_regex(text: str, ok: bool) -> None:
    """vLLM's outlines backend compiles the same regex (slowly: a DFA over the vocabulary)."""
    outlines_core = pytest.importorskip("outlines_core")
    vocabulary = outlines_core.Vocabulary(256, {bytes([i]): [i] for i in range(256)})
    index = outlines_core.Index(RowSchema("billing", 20).regex, vocabulary)
    state = index.get_initial_state()
    for byte in _row(text).encode():
        state = index.get_next_state(state, byte)
        if state is None:
            break
    assert (state is not None and index.is_final_state(state)) == ok
