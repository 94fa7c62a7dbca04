"""Top-p (nucleus) filtering without sorting the vocabulary, for vLLM on a CPU.

vLLM's CPU sampler finds each sequence's nucleus by sorting all of its logits every step
(`apply_top_k_top_p_pytorch`: 49,152 for the built-in model, 151,936 for Qwen). Profiled
on the default path (64 rows in flight), that sort took 21% (built-in) and 32% (0.5B) of
the engine's time. The nucleus is almost always among the few hundred most likely
tokens, so `nucleus` finds it there: the largest logits of a window (`torch.topk`, no
full sort), their probabilities against the softmax over the whole vocabulary (one
`logsumexp`), and the same rule as vLLM's (a token stays while the probability of the
tokens above it is below p). A row whose window holds less than p of the probability
tries the next window, and past the last one vLLM's own sort, so the result is vLLM's
filter (up to float rounding at the cut-off), computed in a smaller space; upstream
proposes the same for its GPU path (vllm-project/vllm#48913). The same rows at 1.28x
(built-in) and 1.52x (0.5B) the tokens/s (`bench/decoding_paths.py`).

`install` puts it in place of vLLM's filter in this process on a CPU; a vLLM whose
sampler module has another layout is left as it is. The in-process engine calls it, and
localgen registers it as a vLLM general plugin (pyproject.toml), which vLLM runs in every
process it starts, so the server `localgen serve` starts samples with it too.
VLLM_PLUGINS="" (vLLM's allow-list of plugins, naming none) turns the plugin off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Candidates per row, tried in turn: a row whose nucleus spills past one window tries the
# next, and past the last, vLLM's sort. torch.topk of 4,096 costs about a quarter of a
# sort of 49,152 logits and a tenth of 151,936 (one core).
WINDOWS = (256, 4096)


def nucleus(
    logits: Any, k: Any, p: Any, fallback: Callable[..., Any], windows: tuple[int, ...] = WINDOWS
) -> Any:
    """`logits` ([rows, vocabulary]) with every token outside each row's top-p nucleus set
    to -inf, in place, as vLLM's `apply_top_k_top_p_pytorch(logits, k, p)` does (the same
    tokens, up to float rounding right at the cut-off and which of equal logits there is
    kept). Top-k, no top-p, and rows past every window go to `fallback` (vLLM's own)."""
    if p is None or k is not None or not windows or logits.shape[1] <= windows[0]:
        return fallback(logits, k, p)
    top, index = logits.topk(windows[0], dim=-1)  # largest first
    probs = (top - logits.logsumexp(dim=-1, keepdim=True)).exp()
    above = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked above each
    # Rows whose nucleus may reach past the window, and rows without top-p (p = 1: a
    # greedy request beside sampled ones) go on as vLLM's would.
    spills = (probs.sum(dim=-1) < p) | (p >= 1)
    top.masked_fill_(above >= p.unsqueeze(1), -float("inf"))
    rows = spills.nonzero().squeeze(1)
    rest = logits[rows] if len(rows) else None  # a copy, before the fill below
    logits.fill_(-float("inf")).scatter_(1, index, top)
    if rest is not None:
        q = p[rows]
        if bool((whole := q >= 1).any()):
            rest[whole] = fallback(rest[whole], None, q[whole])
        if bool((wider := q < 1).any()):
            rest[wider] = nucleus(rest[wider], None, q[wider], fallback, windows[1:])
        logits[rows] = rest
    return logits


def install() -> bool:
    """`nucleus` in place of the top-p filter of vLLM's sampler (once per process; the
    replaced one stays as its `original`); whether it is in place."""
    try:
        from vllm.platforms import current_platform
        from vllm.v1.sample.ops import topk_topp_sampler as sampler
    except ImportError:
        return False
    if not current_platform.is_cpu():  # measured on a CPU only; elsewhere vLLM's own
        return False
    original = getattr(sampler, "apply_top_k_top_p", None)
    if original is None or hasattr(original, "original"):
        return original is not None

    def apply_top_k_top_p(logits: Any, k: Any, p: Any) -> Any:
        return nucleus(logits, k, p, fallback=original)

    apply_top_k_top_p.original = original  # type: ignore[attr-defined]
    sampler.apply_top_k_top_p = apply_top_k_top_p
    return True
