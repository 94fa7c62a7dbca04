"""The settings: each default written once in config.py, and the docs generated from it."""

import pytest

from localgen.config import BoostConfig, GenerateConfig, ServeConfig, settings_markdown
from localgen.errors import UsageError
from tests.helpers import ROOT


def test_settings_doc_is_generated_from_config() -> None:
    # docs/settings.md lists every default; `make docs` regenerates it from config.py.
    assert (ROOT / "docs" / "settings.md").read_text() == settings_markdown()


def test_defaults_shared_between_stages_are_one_value() -> None:
    assert BoostConfig.max_retries == GenerateConfig.max_retries
    doc = settings_markdown()
    assert f"| `max_model_len` | `{ServeConfig.max_model_len}` |" in doc


def test_count_and_balance_together_are_a_usage_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match="either --count or --balance") as caught:
        GenerateConfig(task_path=tmp_path, out=tmp_path, count=3, balance="majority")
    assert caught.value.exit_code == 2
