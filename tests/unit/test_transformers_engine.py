"""The transformers engine's batching, without a model: every request is constrained by
its own schema and sampled with its own settings. (The real engine runs in the
integration tests.)"""

from dataclasses import replace
from typing import Any

from localgen.engines.transformers import TransformersEngine
from localgen.planning.requests import Request
from localgen.planning.schema import RowSchema


class _Tokenizer:
    def apply_chat_template(self, messages: list[dict[str, str]], **_: Any) -> str:
        return messages[0]["content"]

    def encode(self, text: str, add_special_tokens: bool = False) -> list[str]:
        return text.split()


class _Generator:
    """Records, per prompt, the schema it was built for and the temperature it got."""

    def __init__(self, schema: RowSchema, seen: dict[str, tuple[RowSchema, float]]) -> None:
        self.schema, self.seen = schema, seen

    def batch(self, prompts: list[str], **sampling: Any) -> list[str]:
        for prompt in prompts:
            self.seen[prompt] = (self.schema, sampling["temperature"])
        return ['{"text":"x","label":"y"}'] * len(prompts)


def test_requests_are_batched_by_schema_and_sampling_settings() -> None:
    seen: dict[str, tuple[RowSchema, float]] = {}
    engine = TransformersEngine.__new__(TransformersEngine)
    engine.tokenizer = _Tokenizer()
    engine._generator = lambda request: _Generator(request.schema, seen)  # type: ignore[method-assign]
    row = Request(
        "a-0", "a", "zero-shot", "zero-shot", "", "row 0", RowSchema("a", 200), 0.9, 0.95, 1
    )
    requests = [
        row,
        # A hierarchical summary of the same label: another schema (shorter text).
        replace(row, key="a-0/summary", prompt="summary 0", schema=RowSchema("a", 105)),
        replace(row, key="a-1", prompt="row 1", temperature=0.2),
        replace(row, key="a-2", prompt="row 2"),
    ]
    completions = list(engine.generate(requests))
    assert sorted(c.key for c in completions) == sorted(r.key for r in requests)
    for r in requests:
        assert seen[r.prompt] == (r.schema, r.temperature), r.key
