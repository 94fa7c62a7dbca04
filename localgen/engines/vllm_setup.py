"""The settings localgen runs vLLM with, in this process (`engines/vllm.py`) and as a
server (`engines/server.py`): one place, so both give the same rows.

On a CPU they are the ones that start in seconds: eager mode (torch.compile's cache fails
to reload on CPU and costs over a minute per start), bfloat16 only where the CPU has it
natively, whole prefills, and a bounded KV cache. This module does not import vLLM.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

INSTALL_HINT = "pip install 'localgen[cpu]' (no NVIDIA GPU) or 'localgen[gpu]'"
CPU_BATCH_TOKENS = 8192  # prompt tokens per engine step on CPU (no chunked prefill there)
# Tokens per KV-cache block on CPU (vLLM's CPU default is 128; it takes multiples of 32).
# The prefix cache reuses whole blocks only, so a prompt that shares a prefix recomputes
# on average half a block of it: labelling documents ran 1.58x as fast with 32 (4.08 vs
# 2.58 documents/s, SMS texts behind a ~460-token shared prompt, built-in model), and
# generation was no slower (83.5 / 61.0 against 77.4 / 57.2 tokens/s, 64 zero-shot rows,
# two seeds). A one-off comparison, 2026-12-07; docs/measurements.md, "Labelling documents".
CPU_BLOCK_SIZE = 32
# Read by vLLM at start; set only where the user has not set them.
ENV_DEFAULTS = {
    "VLLM_CPU_KVCACHE_SPACE": "2",  # GiB; ~90k tokens for a 135M model
    "VLLM_REGEX_COMPILATION_TIMEOUT_S": "300",  # the outlines backend compiles slowly
}


def cpu_dtype() -> Literal["bfloat16", "float32"]:
    """bfloat16 only where the CPU computes it natively; emulated on AVX2 it ran 2.3-2.7x
    slower than float32 (38.9 vs 105.0 tokens/s unconstrained, 32.1 vs 72.8 with the row grammar;
    SmolLM2-135M on a 2-core AMD EPYC without AVX-512; `make bench-dtype`)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "float32"
    return "bfloat16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32"


def structured_outputs(backend: str) -> dict[str, Any]:
    """vLLM's structured-output settings: the backend, with whitespace off between JSON
    tokens. Whitespace is engine-wide (xgrammar ignores it per request), and vLLM refuses
    the setting for the outlines backend."""
    return {"backend": backend} | (
        {"disable_any_whitespace": True} if backend != "outlines" else {}
    )


def cpu_options(max_model_len: int) -> dict[str, Any]:
    """vLLM 0.32's CPU build crashes ("CPU Generator does not use offset") when a request
    with its own seed is prefilled in chunks, which happens as soon as a step holds more
    prompt tokens than the batch budget. Whole prefills avoid it. Smaller KV blocks let
    the prefix cache serve more of a shared prompt (CPU_BLOCK_SIZE)."""
    return {
        "enable_chunked_prefill": False,
        "max_num_batched_tokens": max(max_model_len, CPU_BATCH_TOKENS),
        "block_size": CPU_BLOCK_SIZE,
    }


def load_progress() -> bool:
    """Whether vLLM shows its weight-loading bar: not where tqdm's own switch TQDM_DISABLE
    is on (`--quiet` sets it), which vLLM overrides by passing `disable` to tqdm itself."""
    return os.environ.get("TQDM_DISABLE", "").lower() not in ("1", "true", "yes")


def llm_options(
    model_path: Path | None,
    backend: str,
    max_model_len: int,
    seed: int,
    tensor_parallel_size: int,
    on_gpu: bool,
    progress: bool = True,
) -> dict[str, Any]:
    """The keyword arguments of `vllm.LLM` for localgen's in-process engine; `progress`:
    the weight-loading bar (`load_progress`)."""
    return {
        "model": str(model_path),
        "use_tqdm_on_load": progress,
        "seed": seed,
        "max_model_len": max_model_len,
        "dtype": "auto" if on_gpu else cpu_dtype(),  # the model's own dtype on a GPU
        "enforce_eager": not on_gpu,  # CUDA graphs on a GPU; no torch.compile on a CPU
        "tensor_parallel_size": tensor_parallel_size,
        # One GPU or a CPU: everything in this process. Several: vLLM's workers.
        "distributed_executor_backend": "uni" if tensor_parallel_size == 1 else "mp",
        "structured_outputs_config": structured_outputs(backend),
    } | ({} if on_gpu else cpu_options(max_model_len))
