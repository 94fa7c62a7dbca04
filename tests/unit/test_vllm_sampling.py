"""The top-p filter localgen puts into vLLM's CPU sampler gives vLLM's own result: the same
tokens kept, with the same logits, for peaked rows (nucleus inside the first window),
flatter ones (inside the second), flat ones (past both: vLLM's sort), rows a grammar
masked, and mixed top-p values."""

import pytest

torch = pytest.importorskip("torch")
sampler = pytest.importorskip("vllm.v1.sample.ops.topk_topp_sampler")

from localgen.engines.vllm_sampling import WINDOWS, install, nucleus  # noqa: E402

VOCABULARY = 49_152  # the built-in model's


def reference(logits, k, p):  # type: ignore[no-untyped-def]
    return sampler.apply_top_k_top_p_pytorch(logits, k, p, allow_cpu_sync=True)


def batch(seed: int) -> tuple[object, object]:
    g = torch.Generator().manual_seed(seed)
    rows = []
    for scale in (8.0, 4.0, 2.0, 0.3, 0.0):  # from peaked to flat (0: every logit equal-ish)
        rows.append(torch.randn(VOCABULARY, generator=g) * scale)
    masked = torch.randn(VOCABULARY, generator=g) * 3.0
    masked[torch.rand(VOCABULARY, generator=g) < 0.99] = -float("inf")  # a grammar's mask
    rows.append(masked)
    few = torch.full((VOCABULARY,), -float("inf"))
    few[:3] = torch.tensor([1.0, 0.5, -2.0])  # fewer admitted tokens than the window
    rows.append(few)
    logits = torch.stack(rows)
    p = torch.tensor([0.95, 0.9, 0.5, 0.95, 0.95, 0.8, 0.95], dtype=torch.float32)
    return logits, p


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_nucleus_is_vllms_own(seed: int) -> None:
    logits, p = batch(seed)
    expected = reference(logits.clone(), None, p)
    calls = []

    def fallback(rows, k, q):  # type: ignore[no-untyped-def]
        calls.append(rows.shape[0])
        return reference(rows, k, q)

    got = nucleus(logits.clone(), None, p, fallback=fallback)
    assert torch.equal(torch.isinf(got), torch.isinf(expected))
    assert torch.equal(got[~torch.isinf(got)], expected[~torch.isinf(expected)])
    kept = (~torch.isinf(got)).sum(dim=1)
    spilled = int((kept > WINDOWS[-1]).sum())
    between = (kept > WINDOWS[0]) & (kept <= WINDOWS[-1])
    assert kept.min() < WINDOWS[0] and bool(between.any()) and 0 < spilled < len(kept)
    assert calls == [spilled]  # only rows whose nucleus spills past every window sorted


def test_top_k_and_no_top_p_go_to_vllm() -> None:
    logits, p = batch(0)
    seen = []

    def fallback(rows, k, q):  # type: ignore[no-untyped-def]
        seen.append((k is not None, q is not None))
        return rows

    nucleus(logits, torch.full((7,), 5), p, fallback=fallback)
    nucleus(logits, None, None, fallback=fallback)
    assert seen == [(True, True), (False, False)]


def test_install_replaces_the_filter_of_the_cpu_sampler_once() -> None:
    before = sampler.apply_top_k_top_p  # a real engine of this session may have installed it
    original = getattr(before, "original", before)  # vLLM's own
    sampler.apply_top_k_top_p = original
    try:
        assert install() and install()
        assert sampler.apply_top_k_top_p is not original
        assert sampler.apply_top_k_top_p.original is original  # installed once, not twice
        logits, p = batch(3)
        expected = reference(logits.clone(), None, p)
        got = sampler.apply_top_k_top_p(logits.clone(), None, p)
        assert torch.equal(torch.isinf(got), torch.isinf(expected))
    finally:
        sampler.apply_top_k_top_p = before
