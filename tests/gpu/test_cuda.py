"""On a GPU: fine-tuning and SetFit on the device, and the memory vLLM gives back before
training. Skipped without CUDA (see tests/gpu/conftest.py). The settings vLLM gets on a GPU
(dtype, tensor parallelism, the server's command line) are pure functions of their
arguments, checked on any machine in tests/unit/test_vllm_setup.py."""

import pytest
import torch

from localgen.config import TrainSettings
from localgen.vectors.linear import fit_linear


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
