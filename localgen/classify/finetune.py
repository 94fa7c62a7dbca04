"""Fine-tune the sentence encoder and the linear head together (`localgen train --fine-tune`).

The network is the one `localgen.vectors.encoder.Encoder` runs (mean of the token vectors, unit
length) with the head on top, so a fine-tuned model is used exactly like a frozen one.
Training starts from the logistic-regression head fitted on the frozen vectors, uses
the same balanced class weights, AdamW, and a fixed seed for the order of the batches.
On a CPU this suits small data (a few hundred rows); on a GPU it uses the GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from localgen.config import TrainSettings
from localgen.progress import Say, silent
from localgen.vectors.encoder import mean_pool, tokenize
from localgen.vectors.linear import LinearHead, row_weights

HEAD_LR_FACTOR = 100  # the head starts fitted but is small: it may move faster


def fine_tune(
    encoder_path: Any,
    texts: Sequence[str],
    labels: Sequence[str],
    head: LinearHead,
    settings: TrainSettings,
    say: Say = silent,
    factors: np.ndarray | None = None,
) -> tuple[Any, Any, LinearHead]:
    """(encoder model, tokenizer, head) after `settings.epochs` passes over the rows;
    `factors` weigh the rows (synthetic rows by the chosen synthetic weight)."""
    epochs, batch_size, seed = settings.epochs, settings.batch_size, settings.seed
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(str(encoder_path))
    model = AutoModel.from_pretrained(str(encoder_path)).to(device).train()
    linear = torch.nn.Linear(head.weight.shape[1], len(head.labels)).to(device)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(head.weight))
        linear.bias.copy_(torch.from_numpy(head.bias))
    index = {name: i for i, name in enumerate(head.labels)}
    y = np.array([index[label] for label in labels])
    sample = row_weights(y, len(head.labels), settings.balanced, factors)
    optimizer = torch.optim.AdamW(
        [
            {"params": model.parameters(), "lr": settings.learning_rate},
            {"params": linear.parameters(), "lr": settings.learning_rate * HEAD_LR_FACTOR},
        ]
    )
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        order = rng.permutation(np.flatnonzero(sample > 0))  # rows of weight 0: none
        total = 0.0
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = tokenize(tokenizer, [texts[i] for i in rows]).to(device)
            hidden = model(**batch).last_hidden_state
            logits = linear(mean_pool(hidden, batch["attention_mask"]))
            target = torch.from_numpy(y[rows]).to(device)
            weight = torch.from_numpy(sample[rows]).to(device, torch.float32)
            losses = torch.nn.functional.cross_entropy(logits, target, reduction="none")
            loss = (losses * weight).sum() / weight.sum().clamp_min(1e-12)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(rows)
        say(f"fine-tune epoch {epoch + 1}/{epochs}: loss {total / len(order):.4f}")
    model = model.eval().to("cpu")
    tuned = LinearHead(
        head.labels,
        linear.weight.detach().cpu().double().numpy(),
        linear.bias.detach().cpu().double().numpy(),
    )
    return model, tokenizer, tuned
