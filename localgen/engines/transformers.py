"""The transformers engine: Outlines on a plain Hugging Face model, for platforms vLLM
does not support. About 6x slower than vLLM on a CPU (docs/measurements.md, "vLLM against
transformers + Outlines"), but it needs only torch and transformers.

The requests the feed has room for are grouped by schema and sampling settings (a batch
is sampled with one temperature and top-p, through one compiled generator) and sent in
batches; a batch's completions are yielded when the batch finishes, and more are taken
once every taken one is answered. The row's regex goes to Outlines (its
EBNF grammar where the backend is xgrammar, as in the vLLM engine).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from localgen.engines.base import Completion, Feed
from localgen.errors import EngineError
from localgen.models.resolve import ModelRef
from localgen.planning.requests import Request
from localgen.planning.schema import LabelChoice, RowSchema

BATCH_SIZE = 16  # padding waste grows with batch size on a CPU; 16 keeps both cores busy


class TransformersEngine:
    name = "transformers"
    context: int | None = None  # the model's own

    def __init__(self, model: ModelRef, backend: str, seed: int) -> None:
        try:
            import outlines
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as e:
            raise EngineError(
                f"the transformers engine needs {e.name}: pip install torch transformers outlines"
            ) from None
        self.backend = backend
        self.seed = seed
        assert model.path is not None, "the transformers engine loads a local folder"
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model.path)
            self.tokenizer.padding_side = "left"  # decoder-only batches pad on the left
            dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
            hf_model = AutoModelForCausalLM.from_pretrained(model.path, dtype=dtype)
            if torch.cuda.is_available():
                hf_model = hf_model.to("cuda")  # type: ignore[arg-type]
        except Exception as e:  # transformers raises many types for a bad folder
            raise EngineError(f"transformers could not load {model.path}: {e}") from None
        self.model = outlines.from_transformers(hf_model, self.tokenizer)  # type: ignore[arg-type]
        self._generators: dict[str, Any] = {}

    def _generator(self, request: Request) -> Any:
        import outlines
        from outlines.types import CFG, Regex

        schema = request.schema
        key = schema.ebnf if self.backend == "xgrammar" else schema.regex
        if key not in self._generators:
            backend = None if self.backend == "outlines_core" else self.backend
            term = CFG(key) if self.backend == "xgrammar" else Regex(key)
            self._generators[key] = outlines.Generator(self.model, term, backend)
        return self._generators[key]

    def generate(self, requests: Iterable[Request] | Feed) -> Iterator[Completion]:
        feed = Feed.of(requests)
        while taken := feed.take(feed.room(0)):
            yield from self._generate(taken)

    def _generate(self, requests: list[Request]) -> Iterator[Completion]:
        import torch

        groups: dict[tuple[RowSchema | LabelChoice, float, float], list[Request]]
        groups = defaultdict(list)
        for r in requests:
            groups[(r.schema, r.temperature, r.top_p)].append(r)
        for group in groups.values():
            generator = self._generator(group[0])
            for start in range(0, len(group), BATCH_SIZE):
                batch = group[start : start + BATCH_SIZE]
                prompts = [
                    self.tokenizer.apply_chat_template(
                        [{"role": "user", "content": r.prompt}],
                        tokenize=False,
                        add_generation_prompt=True,
                    )
                    for r in batch
                ]
                # transformers samples a batch from one generator: seed it from the batch.
                torch.manual_seed(batch[0].seed)
                # Temperature 0 (the label check) is greedy decoding in transformers.
                sampling = (
                    {
                        "do_sample": True,
                        "temperature": batch[0].temperature,
                        "top_p": batch[0].top_p,
                    }
                    if batch[0].temperature > 0
                    else {"do_sample": False}
                )
                outputs = generator.batch(
                    prompts, max_new_tokens=max(r.max_tokens for r in batch), **sampling
                )
                for r, prompt, text in zip(batch, prompts, outputs, strict=True):
                    n_out = len(self.tokenizer.encode(text, add_special_tokens=False))
                    yield Completion(
                        key=r.key,
                        text=text,
                        finish_reason="length" if n_out >= r.max_tokens else "stop",
                        prompt_tokens=len(self.tokenizer.encode(prompt, add_special_tokens=False)),
                        completion_tokens=n_out,
                    )

    def close(self) -> None:
        self._generators.clear()
