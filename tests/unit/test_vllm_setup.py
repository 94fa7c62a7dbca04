"""The settings localgen gives vLLM, in this process and as a server, for a GPU and for a
CPU: pure functions of their arguments, so they are checked here on any machine. What
needs a real CUDA device (training on it, the memory vLLM gives back) is in tests/gpu."""

from pathlib import Path

import pytest

from localgen.config import ServeConfig
from localgen.engines.server import server_command
from localgen.engines.vllm_setup import CPU_BATCH_TOKENS, CPU_BLOCK_SIZE, cpu_dtype, llm_options
from localgen.models.resolve import ModelRef

CPU_ONLY_OPTIONS = {"enable_chunked_prefill", "max_num_batched_tokens", "block_size"}
CPU_ONLY_FLAGS = {
    "--enforce-eager",
    "--dtype",
    "--no-enable-chunked-prefill",
    "--max-num-batched-tokens",
    "--block-size",
}


def test_vllm_options_on_a_gpu_keep_the_model_dtype_and_split_over_gpus() -> None:
    one = llm_options(Path("/m"), "xgrammar", 2048, 7, 1, on_gpu=True)
    assert one["model"] == "/m" and one["seed"] == 7 and one["max_model_len"] == 2048
    assert one["dtype"] == "auto" and one["enforce_eager"] is False  # CUDA graphs
    assert one["tensor_parallel_size"] == 1 and one["distributed_executor_backend"] == "uni"
    assert not CPU_ONLY_OPTIONS & one.keys()  # the CPU-only workarounds stay off
    split = llm_options(Path("/m"), "xgrammar", 2048, 7, 2, on_gpu=True)
    assert split["tensor_parallel_size"] == 2 and split["distributed_executor_backend"] == "mp"
    assert split["dtype"] == "auto" and not CPU_ONLY_OPTIONS & split.keys()


def test_vllm_options_on_a_cpu_are_eager_with_whole_prefills() -> None:
    cpu = llm_options(Path("/m"), "xgrammar", 2048, 0, 1, on_gpu=False)
    assert cpu["dtype"] == cpu_dtype() and cpu["enforce_eager"] is True
    assert cpu["enable_chunked_prefill"] is False and cpu["block_size"] == CPU_BLOCK_SIZE
    assert cpu["max_num_batched_tokens"] == CPU_BATCH_TOKENS  # a prompt fits in one step
    long = llm_options(Path("/m"), "xgrammar", 4 * CPU_BATCH_TOKENS, 0, 1, on_gpu=False)
    assert long["max_num_batched_tokens"] == 4 * CPU_BATCH_TOKENS


@pytest.mark.parametrize(
    ("backend", "config"),
    [
        ("xgrammar", {"backend": "xgrammar", "disable_any_whitespace": True}),
        ("outlines", {"backend": "outlines"}),  # vLLM refuses the whitespace setting there
    ],
)
def test_vllm_options_name_the_structured_output_backend(
    backend: str, config: dict[str, object]
) -> None:
    for on_gpu in (True, False):
        options = llm_options(Path("/m"), backend, 2048, 0, 1, on_gpu)
        assert options["structured_outputs_config"] == config


def test_server_command_on_a_gpu_has_no_cpu_settings() -> None:
    model = ModelRef("m", Path("/m"), "-")
    config = ServeConfig(tensor_parallel_size=2, data_parallel_size=2)
    command = server_command(model, config, gpu=True)
    assert not CPU_ONLY_FLAGS & set(command)
    assert command[command.index("--tensor-parallel-size") + 1] == "2"
    assert command[command.index("--data-parallel-size") + 1] == "2"
    # The same server on a CPU carries every CPU setting, and one GPU needs no split.
    cpu = server_command(model, ServeConfig(), gpu=False)
    assert set(cpu) >= CPU_ONLY_FLAGS and cpu[cpu.index("--dtype") + 1] == cpu_dtype()
    single = server_command(model, ServeConfig(), gpu=True)
    assert "--tensor-parallel-size" not in single and "--data-parallel-size" not in single
