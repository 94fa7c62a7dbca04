"""The top-p filter localgen puts into vLLM's CPU sampler gives vLLM's own result: the same
tokens kept, with the same logits, for peaked rows (nucleus inside the first window),
flatter ones (inside the second), flat ones (past both: vLLM's sort), rows a grammar
masked, equal logits at the cut-off, and a row without top-p (p = 1)."""

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
    tied = torch.full((VOCABULARY,), -float("inf"))
    tied[:10] = torch.tensor([2.0] + [1.0] * 9)  # p = 0.5 cuts through the nine equal ones
    rows.append(tied)
    rows.append(torch.randn(VOCABULARY, generator=g) * 3.0)  # p = 1: a greedy row's
    logits = torch.stack(rows)
    p = torch.tensor([0.95, 0.9, 0.5, 0.95, 0.95, 0.8, 0.95, 0.5, 1.0], dtype=torch.float32)
    return logits, p


def kept(logits):  # type: ignore[no-untyped-def]
    """Per row, the logits kept, largest first: which of equal logits at the cut-off is
    kept is the sort's choice, so tokens are compared by value."""
    return [row[~torch.isinf(row)].sort(descending=True).values for row in logits]


def same(got, expected) -> bool:  # type: ignore[no-untyped-def]
    return all(torch.equal(a, b) for a, b in zip(kept(got), kept(expected), strict=True))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_nucleus_is_vllms_own(seed: int) -> None:
    logits, p = batch(seed)
    expected = reference(logits.clone(), None, p)
    calls = []

    def fallback(rows, k, q):  # type: ignore[no-untyped-def]
        calls.append(rows.shape[0])
        return reference(rows, k, q)

    got = nucleus(logits.clone(), None, p, fallback=fallback)
    assert same(got, expected)
    counts = torch.tensor([len(row) for row in kept(got)])
    assert counts[7] == 5  # the largest and four of the nine equal ones
    spilled = int((counts > WINDOWS[-1]).sum())
    between = (counts > WINDOWS[0]) & (counts <= WINDOWS[-1])
    assert counts.min() < WINDOWS[0] and bool(between.any()) and 0 < spilled < len(counts)
    # Sorted by vLLM: the p = 1 row at once, then the others past every window.
    assert counts[8] > WINDOWS[-1] and calls == [1, spilled - 1]


def test_top_k_and_no_top_p_go_to_vllm() -> None:
    logits, p = batch(0)
    seen = []

    def fallback(rows, k, q):  # type: ignore[no-untyped-def]
        seen.append((k is not None, q is not None))
        return rows

    nucleus(logits, torch.full((len(p),), 5), p, fallback=fallback)
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
        assert same(got, expected)
    finally:
        sampler.apply_top_k_top_p = before


def test_every_vllm_process_loads_the_filter_as_a_plugin_unless_turned_off() -> None:
    """vLLM runs its general plugins in each process it starts (the server's engine core
    and workers call `load_general_plugins`), so `localgen serve` samples with the filter
    too; VLLM_PLUGINS="" (an allow-list naming none) turns it off."""
    import os
    import subprocess
    import sys

    script = (
        "from vllm.plugins import load_general_plugins\n"
        "from vllm.v1.sample.ops import topk_topp_sampler as s\n"
        "load_general_plugins()\n"
        "print(hasattr(s.apply_top_k_top_p, 'original'))\n"
    )

    def loaded(**env: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True, text=True, env={**os.environ, **env}, timeout=300, check=True,
        )  # fmt: skip
        return done.stdout.split()[-1]

    assert loaded() == "True"
    assert loaded(VLLM_PLUGINS="") == "False"
