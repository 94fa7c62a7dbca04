"""The vLLM engine: one in-process `vllm.LLM`, fed as it runs: it holds up to the feed's
`in_flight` requests and takes more after each engine step that finishes some, so the
scheduler always has requests waiting and no batch drains before the run's end.

The engine core runs in this process (no worker processes, no ZMQ), with the settings of
`engines/vllm_setup.py`. The constraint goes to vLLM's own structured outputs: the row's
regex for guidance and outlines, its EBNF grammar for xgrammar (`planning/schema.py`).
A label answer starts the model's reply in the prompt (`LabelChoice.REPLY_START`, the
chat's last message continued) and constrains the rest; its completion is given back
whole, as other engines give it. On a CPU, the sampler's top-p filter is localgen's
(`engines/vllm_sampling.py`): vLLM's result without sorting the vocabulary every step.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from localgen.engines import vllm_sampling
from localgen.engines.base import Completion, Continuation, Feed
from localgen.engines.vllm_setup import (
    ENV_DEFAULTS,
    INSTALL_HINT,
    llm_options,
    load_progress,
)
from localgen.errors import EngineError
from localgen.models.resolve import ModelRef
from localgen.planning.requests import Request
from localgen.planning.schema import LabelChoice


def _first_line(e: BaseException) -> str:
    """The line of an exception's message that says what is wrong (pydantic puts a link
    last, vLLM a stack of context first)."""
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("For further information")]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or [type(e).__name__])[-1][:300]


def _alternatives(choice: Any) -> tuple[tuple[tuple[str, float], ...], ...] | None:
    """Per generated token: the sampled one first, then the others vLLM returned, most
    likely first, as (decoded text, log-probability)."""
    if not choice.logprobs:
        return None
    steps = []
    for token, candidates in zip(choice.token_ids, choice.logprobs, strict=False):
        ranked = sorted(candidates.items(), key=lambda item: (item[0] != token, -item[1].logprob))
        steps.append(tuple((c.decoded_token or "", float(c.logprob)) for _, c in ranked))
    return tuple(steps)


class VllmEngine:
    name = "vllm"

    def __init__(
        self,
        model: ModelRef,
        backend: str,
        max_model_len: int,
        seed: int,
        tensor_parallel_size: int = 1,
    ) -> None:
        # Read by vLLM at import or start: in-process engine core, a bounded KV cache on CPU.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        for name, value in ENV_DEFAULTS.items():
            os.environ.setdefault(name, value)
        try:
            import torch
            from vllm import LLM
        except ImportError as e:
            raise EngineError(f"vLLM is not installed ({e.name}): {INSTALL_HINT}") from None
        self.backend = backend
        self.model = model
        self.context: int | None = max_model_len
        vllm_sampling.install()  # on a CPU: the top-p filter without a sort
        options = llm_options(
            model.path,
            backend,
            max_model_len,
            seed,
            tensor_parallel_size,
            torch.cuda.is_available(),
            load_progress(),
        )
        try:
            self.llm = LLM(**options)
        except Exception as e:  # vLLM raises many types for a model it cannot load
            raise EngineError(f"vLLM could not load {model.path}: {_first_line(e)}") from None

    def _constraint(self, request: Request) -> Any:
        from vllm.sampling_params import StructuredOutputsParams

        schema = request.schema
        if isinstance(schema, LabelChoice):  # the reply's start is in the prompt
            if self.backend == "xgrammar":
                return StructuredOutputsParams(grammar=schema.rest_ebnf)
            return StructuredOutputsParams(regex=schema.rest_regex)
        if self.backend == "xgrammar":
            return StructuredOutputsParams(grammar=schema.ebnf)
        return StructuredOutputsParams(regex=schema.regex)

    def _enqueue(self, request: Request) -> tuple[str, str]:
        """Hand one request to vLLM: its internal id, and the start of the reply written
        into the prompt ("" where none)."""
        start = LabelChoice.REPLY_START if isinstance(request.schema, LabelChoice) else ""
        messages: list[Any] = [{"role": "user", "content": request.prompt}]
        if start:
            messages.append({"role": "assistant", "content": start})
        [internal] = self.llm.enqueue_chat(
            messages,
            self.sampling_params(request),
            use_tqdm=False,
            add_generation_prompt=not start,
            continue_final_message=bool(start),
        )
        return internal, start

    def sampling_params(self, request: Request) -> Any:
        """vLLM's SamplingParams for a request: its sampling settings, seed and grammar."""
        from vllm import SamplingParams

        return SamplingParams(
            temperature=request.temperature,
            top_p=request.top_p,
            max_tokens=request.max_tokens,
            seed=request.seed,
            structured_outputs=self._constraint(request),
            # The sampled token's raw log-probability (Completion.mean_logprob), and the
            # alternatives where the request asks for them (Completion.top_logprobs).
            logprobs=request.top_logprobs,
        )

    def generate(self, requests: Iterable[Request] | Feed) -> Iterator[Completion]:
        feed = Feed.of(requests)
        engine = self.llm.llm_engine
        keys: dict[str, str] = {}  # vLLM's internal request id -> request key, held ones
        internal_of: dict[str, str] = {}  # external id -> internal id, held ones
        wanted: dict[str, bool] = {}  # request key -> whether it asked for alternatives
        started: dict[str, str] = {}  # request key -> the reply's start given in the prompt
        try:
            while True:
                taken = feed.take(feed.room(len(keys)))
                for r in taken:
                    # One at a time, so a request vLLM refuses (a prompt longer than the
                    # context) is one failed row, not a failed batch.
                    try:
                        internal, started[r.key] = self._enqueue(r)
                    except Exception as e:  # vLLM raises ValueError and its own errors
                        yield Completion(r.key, "", "error", 0, 0, error=_first_line(e))
                        continue
                    keys[internal] = r.key
                    wanted[r.key] = r.top_logprobs > 0
                    # enqueue returns internal ids ("7-a1b2c3"); outputs carry the external.
                    internal_of[internal.rsplit("-", 1)[0]] = internal
                if not keys:
                    if taken:  # every one refused: there may be more
                        continue
                    return
                if not engine.has_unfinished_requests():  # never seen; would loop for ever
                    raise EngineError(f"vLLM dropped {len(keys)} requests without an answer")
                # The loop of LLM.wait_for_completion, one step at a time, yielding each
                # finished request so rows reach the disk (and the progress bar) as the
                # batch runs, and the feed tops the batch up.
                for out in engine.step():
                    if not out.finished:
                        continue
                    internal = internal_of.pop(out.request_id, out.request_id)
                    internal_of.pop(internal.rsplit("-", 1)[0], None)
                    key = keys.pop(internal)
                    choice = out.outputs[0]  # type: ignore[index]
                    n_out = len(choice.token_ids)
                    total = choice.cumulative_logprob
                    steps = _alternatives(choice) if wanted.pop(key) else None
                    start = started.pop(key)
                    if start and steps is not None:  # given, as if written with certainty
                        steps = (((start, 0.0),),) + steps
                    yield Completion(
                        key=key,
                        text=start + choice.text,
                        finish_reason=str(choice.finish_reason),
                        prompt_tokens=len(out.prompt_token_ids or ()),
                        completion_tokens=n_out,
                        mean_logprob=None if total is None or not n_out else total / n_out,
                        top_logprobs=steps,
                        cached_tokens=out.num_cached_tokens,
                    )
        finally:
            # Interrupted mid-batch: drop what is still queued so the engine can be reused.
            if keys and engine.has_unfinished_requests():
                engine.abort_request(list(keys), internal=True)

    def likelihoods(self, items: Sequence[Continuation]) -> list[float]:
        """For each item, the log-probability the model gives its `text` after its
        prompt and the start of the reply: the sum over the text's tokens, read from
        vLLM's prompt log-probabilities in a prompt-only pass (one token decoded, unread).
        The text's tokens are appended to the prompt's as they are, so every item of one
        text scores the same tokens.

        vLLM leaves the prefix cache unread for such requests, since it returns no
        log-probabilities for what the cache served; here it is read, because only the
        text's are needed and the prompts (one per label) are shared by every text:
        6.2x faster on the TREC-6 task (docs/measurements.md, "The fit margin"). Where
        the cache served a token of the text too (a text scored twice, or sharing a
        cache block's worth of opening words with an earlier one after the same prompt),
        that item is computed again without it."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        tokenizer = self.llm.get_tokenizer()
        heads: dict[tuple[str, str], list[int]] = {}  # one per label's prompt: built once
        prompts, lengths = [], []
        for item in items:
            if (item.prompt, item.start) not in heads:
                messages: list[Any] = [
                    {"role": "user", "content": item.prompt},
                    {"role": "assistant", "content": item.start},
                ]
                rendered: Any = tokenizer.apply_chat_template(
                    messages, tokenize=False, continue_final_message=True
                )
                heads[item.prompt, item.start] = tokenizer.encode(
                    rendered, add_special_tokens=False
                )
            tail = tokenizer.encode(item.text, add_special_tokens=False)
            prompts.append(TokensPrompt(prompt_token_ids=heads[item.prompt, item.start] + tail))
            lengths.append(len(tail))
        scores: list[float | None] = [None] * len(items)
        for read_cache in (True, False):
            todo = [i for i, got in enumerate(scores) if got is None]
            if not todo:
                break
            params = SamplingParams(
                max_tokens=1,
                temperature=0.0,
                prompt_logprobs=0,
                detokenize=False,  # ids are enough, and a cached position holds none
                skip_reading_prefix_cache=not read_cache,
            )
            outputs = self.llm.generate([prompts[i] for i in todo], params, use_tqdm=False)
            for i, out in zip(todo, outputs, strict=True):
                ids: Any = out.prompt_token_ids
                steps: Any = out.prompt_logprobs
                first = len(ids) - lengths[i]  # the text's first token
                if first > (out.num_cached_tokens or 0):  # every text token computed
                    scores[i] = float(sum(steps[j][ids[j]].logprob for j in range(first, len(ids))))
        return [float(s) for s in scores]  # type: ignore[arg-type]

    def close(self) -> None:
        """Shut the engine down and give its memory back: on a GPU, what vLLM held (weights,
        KV cache, its process group) is freed before `run` or `boost` trains on the card;
        dropping the object alone leaves most of it allocated."""
        import gc

        engine = getattr(self.llm, "llm_engine", None)
        if engine is not None and hasattr(engine, "engine_core"):
            engine.engine_core.shutdown()
        del self.llm
        gc.collect()
        release_gpu()


def release_gpu() -> None:
    """vLLM's own teardown of its model-parallel groups and distributed state, then the
    CUDA cache emptied. Nothing to do without CUDA."""
    import gc

    import torch

    if not torch.cuda.is_available():
        return
    try:
        from vllm.distributed.parallel_state import (
            destroy_distributed_environment,
            destroy_model_parallel,
        )
    except ImportError:  # another vLLM layout: the cache is still emptied
        pass
    else:
        destroy_model_parallel()
        destroy_distributed_environment()
    gc.collect()
    torch.cuda.empty_cache()
