"""SetFit (`localgen train --method setfit`): tune the sentence encoder on pairs, then fit the head.

Stage one teaches the encoder that rows of one label belong together: it draws a budget
of pairs from the training rows, half of the same label (cosine target 1) and half of
different labels (target 0), and trains with sentence-transformers' `CosineSimilarityLoss`
and trainer, as SetFit does (Tunstall et al., 2022). Stage two is the usual linear head
(`localgen.vectors.linear`) fitted on the tuned encoder's vectors, so the model folder,
`evaluate` and `predict` are those of a fine-tuned model.

A row is picked as a pair's first text with probability proportional to the weight the
caller gives it (`localgen.classify.train` passes the class balance, so each label anchors
the same share of pairs, and 0 for synthetic rows when there are real ones: measured,
pairs of synthetic rows cost SetFit more than they gave; the synthetic rows still join the
head at their weight). The budget is fixed, so training time does not grow with the rows.
The `setfit` package itself is not used: its trainer takes no row weights, and it would
bring `evaluate` and a second head.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from localgen.config import TrainSettings
from localgen.progress import Progress, Say, silent
from localgen.vectors.encoder import MAX_TOKENS

WARMUP = 0.1  # share of the steps with a rising learning rate (SetFit's default)


def sample_pairs(
    labels: Sequence[str], weights: np.ndarray, budget: int, seed: int
) -> list[tuple[int, int, float]]:
    """`budget` pairs (first row, second row, target): even ones of the same label (1.0),
    odd ones of two labels (0.0). Rows are drawn by `weights`; a row of weight 0 never is.
    A label whose only row is drawn pairs it with itself; with one label, no pair differs."""
    rng = np.random.default_rng(seed)
    y = np.asarray(labels)
    w = np.asarray(weights, dtype=np.float64)
    live = np.flatnonzero(w > 0)
    if len(live) == 0:
        return []
    p = w[live] / w[live].sum()
    same = {label: live[y[live] == label] for label in set(y[live].tolist())}
    pairs: list[tuple[int, int, float]] = []
    for k in range(budget):
        anchor = int(rng.choice(live, p=p))
        positive = k % 2 == 0 or len(same) < 2
        pool = same[y[anchor]] if positive else live[y[live] != y[anchor]]
        if positive and len(pool) > 1:
            pool = pool[pool != anchor]
        partner = int(rng.choice(pool, p=w[pool] / w[pool].sum()))
        pairs.append((anchor, partner, 1.0 if positive else 0.0))
    return pairs


def sentence_model(encoder_path: Any, device: str) -> Any:
    """The network `localgen.vectors.encoder.Encoder` runs, as a SentenceTransformer: the
    transformer cut at MAX_TOKENS, the mean of its token vectors, unit length (whatever
    pooling the folder's own modules.json names, so tuned and used alike)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    body = Transformer(str(encoder_path), max_seq_length=MAX_TOKENS)
    pooling = Pooling(body.get_embedding_dimension(), pooling_mode="mean")
    return SentenceTransformer(modules=[body, pooling, Normalize()], device=device)


def _progress_callback(progress: Progress, pairs_per_step: int) -> Any:
    from transformers import TrainerCallback

    class Advance(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            progress.advance(min(pairs_per_step, progress.total - progress.done))

    return Advance()


def _quiet(trainer: Any) -> Any:
    """The trainer without its model card (a Hub page, computed with a progress bar of its
    own); the model folder has model.json."""

    class Trainer(trainer):
        def add_model_card_callback(self, *_args: Any, **_kwargs: Any) -> None:
            return None

    return Trainer


def tune_encoder(
    encoder_path: Any,
    texts: Sequence[str],
    labels: Sequence[str],
    weights: np.ndarray,
    settings: TrainSettings,
    say: Say = silent,
) -> Any:
    """Stage one: the encoder (a SentenceTransformer) after `settings.pairs` pairs."""
    import torch
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss
    from transformers import PrinterCallback
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the trainer's notes on defaults are not the user's
    hf_logging.disable_progress_bar()  # nor its "Loading weights" bar
    pairs = sample_pairs(labels, weights, settings.pairs, settings.seed)
    if not pairs:
        raise ValueError("no rows to draw pairs from (every row has weight 0)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = sentence_model(encoder_path, device)
    data = Dataset.from_dict(
        {
            "sentence1": [texts[i] for i, _, _ in pairs],
            "sentence2": [texts[j] for _, j, _ in pairs],
            "score": [target for _, _, target in pairs],
        }
    )
    steps = math.ceil(len(pairs) / settings.batch_size)
    say(f"setfit: tuning the encoder on {len(pairs)} pairs ({steps} steps on the {device})")
    progress = Progress(len(pairs), enabled=say is not silent, label="pairs", tokens=False)
    with tempfile.TemporaryDirectory(prefix="localgen-setfit-") as scratch:
        args = SentenceTransformerTrainingArguments(
            output_dir=scratch,
            per_device_train_batch_size=settings.batch_size,
            max_steps=steps,
            learning_rate=settings.learning_rate,
            warmup_steps=WARMUP,
            seed=settings.seed,
            data_seed=settings.seed,
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            use_cpu=device == "cpu",
        )
        trainer = _quiet(SentenceTransformerTrainer)(
            model=model,
            args=args,
            train_dataset=data,
            loss=CosineSimilarityLoss(model),
            callbacks=[_progress_callback(progress, settings.batch_size)],
        )
        trainer.remove_callback(PrinterCallback)  # it prints the final metrics as a dict
        trainer.train()
    progress.close()
    return model.eval()


def encode(model: Any, texts: Sequence[str]) -> np.ndarray:
    """Unit-length vectors of `texts` from a tuned SentenceTransformer."""
    vectors = model.encode(list(texts), batch_size=64, convert_to_numpy=True)
    return np.asarray(vectors, dtype=np.float32)
