"""The preparation step every generation starts with: each input read, and the model and
its context resolved, once."""

import dataclasses
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from localgen.config import EngineSettings, GenerateConfig
from localgen.engines.fake import FakeEngine
from localgen.generation import prepare as preparing
from localgen.generation.generate import generate
from localgen.models.resolve import ModelRef


def _model_folder(path: Path, context: int) -> ModelRef:
    """A model folder with what prompts are measured by: a context and a tokenizer."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    path.mkdir()
    (path / "config.json").write_text(json.dumps({"max_position_embeddings": context}))
    tokenizer = Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()  # type: ignore[assignment]
    tokenizer.save(str(path / "tokenizer.json"))
    return ModelRef("measured", path, "abc")


def _counted(monkeypatch: pytest.MonkeyPatch, calls: Counter[str], name: str) -> None:
    real = getattr(preparing, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(preparing, name, counted)


def test_a_run_reads_its_task_and_resolves_its_context_once(
    task_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _model_folder(tmp_path / "model", 4096)
    calls: Counter[str] = Counter()
    for name in ("load_task", "context_length", "token_counter", "check_settings"):
        _counted(monkeypatch, calls, name)
    config = GenerateConfig(
        task_path=task_file, out=tmp_path / "run", quiet=True, engine=EngineSettings(name="vllm")
    )
    result = generate(config, engine=FakeEngine(), model=model)
    assert result.written == 6 and result.exit_code == 0
    # the label check asks with the same task: it is not read again
    assert calls == {"load_task": 1, "context_length": 1, "token_counter": 1, "check_settings": 1}
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert "the context holds 4096 tokens" in manifest["plan"]["limits"]  # the prompts measured


def test_the_context_is_the_running_engine_s_else_the_model_s(
    task_file: Path, tmp_path: Path
) -> None:
    model = _model_folder(tmp_path / "model", 4096)
    config = GenerateConfig(
        task_path=task_file, out=tmp_path / "run", engine=EngineSettings(name="vllm")
    )
    prepared = preparing.prepare(config, model=model)
    assert prepared.config.engine.max_model_len == 4096 and prepared.plan.fit is not None
    engine = FakeEngine()
    engine.context = 1024
    running = preparing.prepare(config, model=model, engine=engine)
    assert running.config.engine.max_model_len == 1024  # the engine's, not the model's
    assert running.plan.fingerprint != prepared.plan.fingerprint  # the context is planned for
    fake = dataclasses.replace(config, engine=EngineSettings(name="fake"))
    printed = preparing.prepare(fake, resolve=False)  # `localgen plan`: nothing resolved
    assert printed.model is None and printed.plan.fit is None
