"""The integration layer: the real vLLM engine (CPU build) on the built-in model, real
servers, real files. Every test here is `slow`, and all are skipped, with the reason,
where vLLM is not installed."""

import importlib.util

import pytest

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.path):
            item.add_marker(pytest.mark.slow)
            if not HAS_VLLM:
                item.add_marker(pytest.mark.skip(reason="vLLM is not installed (make install)"))
