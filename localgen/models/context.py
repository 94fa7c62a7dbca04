"""What a model folder says about prompts: how many tokens its context holds, and its
tokenizer, loaded alone (the `tokenizers` library, no weights) to count prompt tokens."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from localgen.errors import ModelError

# The context localgen asks for when the user names none: the model's own, at most this.
# vLLM's CPU build prefills a whole prompt in one step and sizes its batch to the context,
# and 8,192 tokens keep its start-up and memory what they are for short prompts.
DEFAULT_CONTEXT_CAP = 8192
FALLBACK_CONTEXT = 2048  # a config.json that names no context length


def model_context(path: Path | None) -> int | None:
    """The context length a model folder declares (max_position_embeddings and kin)."""
    if path is None:
        return None
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):  # check_model_folder says what is wrong with it
        return None
    config = config.get("text_config", config)  # multimodal configs nest the text model
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(config.get(key), int) and config[key] > 0:
            return int(config[key])
    return None


def context_length(requested: int | None, path: Path | None) -> int:
    """The context to run with: the user's --max-model-len, else the model's own, capped."""
    declared = model_context(path)
    if requested is not None:
        if declared is not None and requested > declared:
            raise ModelError(
                f"--max-model-len {requested} is more than the model's context ({declared} tokens)"
            )
        return requested
    return min(declared or FALLBACK_CONTEXT, DEFAULT_CONTEXT_CAP)


def token_counter(path: Path | None) -> Callable[[str], int] | None:
    """Counts a text's tokens with the model's own tokenizer; None without a tokenizer.json."""
    if path is None or not (path / "tokenizer.json").is_file():
        return None
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    except Exception as e:  # the Rust library raises its own exception type
        raise ModelError(f"{path / 'tokenizer.json'}: cannot load the tokenizer: {e}") from None
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)
