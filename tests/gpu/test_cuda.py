"""On a GPU: the settings vLLM gets (the CUDA dtype path, tensor parallelism), the server's
command line, fine-tuning and SetFit on the device, and the memory vLLM gives back before
training. Skipped without CUDA (see conftest.py)."""

from pathlib import Path

import pytest
import torch

from localgen.config import ServeConfig, TrainSettings
from localgen.engines.server import server_command
from localgen.engines.vllm_setup import llm_options
from localgen.models.resolve import ModelRef
from localgen.vectors.linear import fit_linear


def test_vllm_options_on_a_gpu_keep_the_model_dtype_and_split_over_gpus() -> None:
    on_gpu = torch.cuda.is_available()
    one = llm_options(Path("/m"), "xgrammar", 2048, 0, 1, on_gpu)
    assert one["dtype"] == "auto" and one["enforce_eager"] is False
    assert one["distributed_executor_backend"] == "uni"
    assert "enable_chunked_prefill" not in one  # the CPU-only workaround stays off
    split = llm_options(Path("/m"), "xgrammar", 2048, 0, 2, on_gpu)
    assert split["tensor_parallel_size"] == 2 and split["distributed_executor_backend"] == "mp"


def test_server_command_on_a_gpu_has_no_cpu_settings() -> None:
    model = ModelRef("m", Path("/m"), "-")
    config = ServeConfig(tensor_parallel_size=2, data_parallel_size=2)
    command = server_command(model, config, gpu=torch.cuda.is_available())
    assert "--enforce-eager" not in command and "--dtype" not in command
    assert command[command.index("--tensor-parallel-size") + 1] == "2"
    assert command[command.index("--data-parallel-size") + 1] == "2"


def test_fine_tuning_trains_on_the_gpu() -> None:
    from localgen.classify.finetune import fine_tune
    from localgen.vectors.encoder import Encoder, default_encoder_path

    texts = ["it rains all day", "a storm is coming", "the team scored", "a late goal won it"]
    labels = ["weather", "weather", "football", "football"]
    head = fit_linear(Encoder().encode(texts), labels)
    torch.cuda.reset_peak_memory_stats()
    _, _, tuned = fine_tune(default_encoder_path(), texts, labels, head, TrainSettings(epochs=1))
    assert torch.cuda.max_memory_allocated() > 0  # the encoder was trained on the device
    assert tuned.weight.shape == head.weight.shape


def test_setfit_trains_on_the_gpu() -> None:
    import numpy as np

    from localgen.classify.setfit import tune_encoder
    from localgen.vectors.encoder import default_encoder_path

    texts = ["it rains all day", "a storm is coming", "the team scored", "a late goal won it"]
    labels = ["weather", "weather", "football", "football"]
    torch.cuda.reset_peak_memory_stats()
    settings = TrainSettings(method="setfit", pairs=16, batch_size=4)
    model = tune_encoder(default_encoder_path(), texts, labels, np.ones(4), settings)
    assert torch.cuda.max_memory_allocated() > 0  # the pairs were trained on the device
    assert str(model.device).startswith("cuda")


def test_closing_vllm_gives_the_gpu_back_for_training(builtin_model) -> None:  # type: ignore[no-untyped-def]
    """run and boost train right after generating: the engine's memory must be free then."""
    pytest.importorskip("vllm")
    from localgen.config import EngineSettings
    from localgen.engines.loader import load_engine

    free_before, total = torch.cuda.mem_get_info()
    engine = load_engine(EngineSettings(name="vllm", max_model_len=2048), builtin_model)
    free_loaded, _ = torch.cuda.mem_get_info()
    assert free_before - free_loaded > total * 0.3  # vLLM took most of the card
    engine.close()
    free_after, _ = torch.cuda.mem_get_info()
    assert free_after > free_before - 2 * 2**30  # all but 2 GiB of it came back
