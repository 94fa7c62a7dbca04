"""`localgen train`, `evaluate` and `predict`: the classifier from files, and back to files.

Training data is real rows (a labeled file), synthetic rows (a run folder: its curated
rows when curate has run) or both. Texts are embedded once by the encoder (a run folder
keeps the vectors of its rows, so curate, report and train share them), the linear head
is fitted, and, with the `fine-tune` or `setfit` method, the encoder is trained too. The
result is a model folder (`localgen.classify.classifier`). Evaluation scores it on a labeled file
with bootstrap intervals (`localgen.classify.evaluation`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from localgen.artifacts import software_versions, utc_now
from localgen.classify.classifier import TextClassifier, check_model_out, resolve_encoder
from localgen.classify.evaluation import score
from localgen.classify.mixing import (
    Mix,
    choose_weight,
    factors,
    fit_mix,
    label_fit,
    synthetic_gate,
)
from localgen.config import RESAMPLES, TrainConfig, TrainSettings
from localgen.data import (
    LabeledData,
    check_labels,
    data_warnings,
    label_conflicts,
    read_labeled,
    read_texts,
)
from localgen.documents.label import chosen_documents
from localgen.errors import DataError
from localgen.generation.store import MANIFEST, RunFolder
from localgen.offline import egress_guard
from localgen.progress import Say, silent
from localgen.vectors.encoder import Encoder, cache_file, encode_cached
from localgen.vectors.linear import fit_linear, row_weights

NOTHING_TO_TRAIN = "nothing to train on: give --real FILE, --synthetic RUN_DIR or both"


@dataclass
class TrainingSet:
    """Texts, labels and their vectors, with where each row came from."""

    texts: list[str]
    labels: list[str]
    vectors: np.ndarray
    sources: list[str]  # "real", "synthetic", "documents" or "descriptions" per row
    # A real row's own id; the ids of the real examples a synthetic row's prompt showed.
    # Empty: unknown. Cross-validation keeps a held-out real row's offspring out.
    ids: list[tuple[str, ...]] = field(default_factory=list)
    # A synthetic row's fit_posterior (the generating model's reading of it, generate's
    # check), None where the row has none. Empty: none known.
    fits: list[float | None] = field(default_factory=list)

    def _ids(self) -> list[tuple[str, ...]]:
        return self.ids or [()] * len(self.texts)

    def _fits(self) -> list[float | None]:
        return self.fits or [None] * len(self.texts)

    def subset(self, *sources: str) -> TrainingSet:
        """The rows of these sources, in their order."""
        rows = [i for i, s in enumerate(self.sources) if s in sources]
        ids, fits = self._ids(), self._fits()
        return TrainingSet(
            [self.texts[i] for i in rows],
            [self.labels[i] for i in rows],
            self.vectors[rows],
            [self.sources[i] for i in rows],
            [ids[i] for i in rows],
            [fits[i] for i in rows],
        )

    def join(self, other: TrainingSet) -> TrainingSet:
        """This set's rows followed by `other`'s."""
        return TrainingSet(
            self.texts + other.texts,
            self.labels + other.labels,
            np.concatenate([self.vectors, other.vectors]),
            self.sources + other.sources,
            self._ids() + other._ids(),
            self._fits() + other._fits(),
        )

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for source, label in zip(self.sources, self.labels, strict=True):
            out.setdefault(source, {}).setdefault(label, 0)
            out[source][label] += 1
        return {s: dict(sorted(c.items())) for s, c in sorted(out.items())}


def load_encoder(spec: str | None) -> Any:
    """The encoder object for `spec` (None: the built-in one, loaded once per process)."""
    from localgen.vectors.encoder import default_encoder

    name, path = resolve_encoder(spec)
    return default_encoder() if name == "builtin" else Encoder(path)


def training_set(
    encoder: Any,
    real: LabeledData | None,
    run_dir: Path | None,
    rows: str = "auto",
    say: Say = silent,
    documents: pl.DataFrame | None = None,
    descriptions: dict[str, str] | None = None,
) -> TrainingSet:
    """Embed the real rows, the run's rows (reusing the run folder's cached vectors), the
    documents chosen from a label run (`id`, `text`, `label`) and one row per label
    description (label -> text). The data is checked before anything is embedded."""
    descriptions = descriptions or {}
    frame, name = (None, "") if run_dir is None else RunFolder(run_dir).chosen_rows(rows)
    if frame is not None and frame.height == 0:
        raise DataError(f"{run_dir} {name} holds no rows")
    labels = (
        (real.frame["label"].to_list() if real is not None else [])
        + (frame["label"].to_list() if frame is not None else [])
        + (documents["label"].to_list() if documents is not None else [])
        + list(descriptions)
    )
    if not labels:
        raise DataError(NOTHING_TO_TRAIN)
    if len(set(labels)) < 2:
        raise DataError(f"a classifier needs rows of at least two labels; all are '{labels[0]}'")
    texts: list[str] = []
    parts = []
    sources: list[str] = []
    origin: list[tuple[str, ...]] = []  # TrainingSet.ids
    fits: list[float | None] = []  # TrainingSet.fits
    if real is not None:
        say(f"embedding {real.frame.height} real rows")
        texts += real.frame["text"].to_list()
        parts.append(encoder.encode(real.frame["text"].to_list()))
        sources += ["real"] * real.frame.height
        own = real.frame["id"].to_list() if "id" in real.frame.columns else None
        origin += [(i,) for i in own] if own is not None else [()] * real.frame.height
        fits += [None] * real.frame.height
    if frame is not None and run_dir is not None:
        say(f"embedding {frame.height} synthetic rows from {name}")
        ids, run_texts = frame["id"].to_list(), frame["text"].to_list()
        parts.append(encode_cached(encoder, ids, run_texts, cache_file(run_dir, encoder), say))
        texts += run_texts
        sources += ["synthetic"] * frame.height
        shown = frame["positive_ids"].to_list() if "positive_ids" in frame.columns else None
        origin += [tuple(p or ()) for p in shown] if shown is not None else [()] * frame.height
        has_fit = "fit_posterior" in frame.columns
        fits += frame["fit_posterior"].to_list() if has_fit else [None] * frame.height
    if documents is not None and documents.height:
        say(f"embedding {documents.height} labelled documents")
        texts += documents["text"].to_list()
        parts.append(encoder.encode(documents["text"].to_list()))
        sources += ["documents"] * documents.height
        origin += [(i,) for i in documents["id"].to_list()]
        fits += [None] * documents.height
    if descriptions:
        say(f"embedding {len(descriptions)} label descriptions")
        texts += list(descriptions.values())
        parts.append(encoder.encode(list(descriptions.values())))
        sources += ["descriptions"] * len(descriptions)
        origin += [()] * len(descriptions)
        fits += [None] * len(descriptions)
    return TrainingSet(texts, labels, np.concatenate(parts), sources, origin, fits)


def label_descriptions(task_path: Path | None, settings: TrainSettings) -> dict[str, str]:
    """Each label of the task file -> its description: the rows that join training
    (none without a task, or at a descriptions weight of 0)."""
    if task_path is None or settings.descriptions_weight == 0:
        return {}
    from localgen.planning.task import load_task

    return {name: label.description for name, label in load_task(task_path).labels.items()}


WEIGHTED = ("synthetic", "documents", "descriptions")  # sources weighed against the real rows
# how the printed lines name each source's rows
ROWS_OF = {
    "synthetic": "synthetic rows",
    "documents": "documents rows",
    "descriptions": "label descriptions",
}


def mixing(
    data: TrainingSet, settings: TrainSettings, names: Sequence[str], say: Say = silent
) -> dict[str, Mix]:
    """The weight of each source of rows besides the real ones (none where there are no
    real rows): the setting's factor, the one `auto` chose, with its scores, or under `fit`
    one per row. Each is chosen on the real rows and that source alone."""
    if "real" not in data.sources:
        return {}
    chosen: dict[str, Mix] = {}
    real = [i for i, s in enumerate(data.sources) if s == "real"]
    for source in WEIGHTED:
        if source not in data.sources:
            continue
        setting = getattr(settings, f"{source}_weight")
        if setting == "channel":
            chosen[source] = channel_mix(data, source, len(real))
            continue
        if setting == "fit":
            say(f"weighing each {source} row by how well it fits its label")
            own = [i for i, s in enumerate(data.sources) if s == source]
            labels = [data.labels[i] for i in own]
            weights = label_fit(
                data.vectors[real],
                [data.labels[i] for i in real],
                data.vectors[own],
                labels,
                names,
                settings.c,
                settings.balanced,
            )
            chosen[source] = fit_mix(weights, labels, [data.texts[i] for i in own], len(real))
            continue
        if setting != "auto":
            chosen[source] = Mix(setting, float(setting))
            continue
        say(f"choosing the {source} weight by cross-validation on the real rows")
        rows = [i for i, s in enumerate(data.sources) if s in ("real", source)]
        ids = data._ids()
        real_labels = [data.labels[i] for i in real]
        chosen[source] = choose_weight(
            data.vectors[rows],
            [data.labels[i] for i in rows],
            ["real" if data.sources[i] == "real" else "synthetic" for i in rows],
            names,
            [ids[i] for i in rows],
            settings.c,
            settings.balanced,
            settings.seed,
            gate=synthetic_gate(real_labels, names) if source == "synthetic" else "not_worse",
        )
    return chosen


def channel_mix(data: TrainingSet, source: str, real_rows: int) -> Mix:
    """Each row of `source` weighed by its fit_posterior: how much of its text's
    probability the generating model gives its own label's prompt (generate's check)."""
    own = [i for i, s in enumerate(data.sources) if s == source]
    fits = data._fits()
    missing = sum(fits[i] is None for i in own)
    if missing:
        raise DataError(
            f"{missing} of {len(own)} {ROWS_OF[source]} have no fit_posterior, which "
            "--synthetic-weight channel needs: generate them with the vllm engine and the "
            "label check on"
        )
    weights = np.array([fits[i] for i in own], dtype=np.float64)
    mix = fit_mix(weights, [data.labels[i] for i in own], [data.texts[i] for i in own], real_rows)
    method = (
        "each row: the share of its text's probability the generating model gives its own label"
    )
    return replace(mix, setting="channel", method=method)


def row_weights_of(data: TrainingSet, mixes: dict[str, Mix]) -> np.ndarray | None:
    """Each row's factor in the loss: 1 for a real row, its source's factor, or under
    `fit` its own. None where nothing is mixed."""
    if not mixes:
        return None
    out = factors(data.sources, {source: mix.chosen for source, mix in mixes.items()})
    for source, mix in mixes.items():
        if mix.per_row is not None:
            out[[i for i, s in enumerate(data.sources) if s == source]] = mix.per_row
    return out


ROW_WEIGHTS = "row_weights.parquet"  # in a model folder: each row weighed under `fit`


def _row_weight_tables(data: TrainingSet, mixes: dict[str, Mix]) -> dict[str, pl.DataFrame]:
    """ROW_WEIGHTS: the factor of every row weighed one by one (`fit`), with its source,
    label and text; nothing where no row was."""
    parts = []
    for source, mix in mixes.items():
        if mix.per_row is None:
            continue
        own = [i for i, s in enumerate(data.sources) if s == source]
        parts.append(
            pl.DataFrame(
                {
                    "source": [source] * len(own),
                    "label": [data.labels[i] for i in own],
                    "weight": [round(w, 4) for w in mix.per_row],
                    "text": [data.texts[i] for i in own],
                }
            )
        )
    return {ROW_WEIGHTS: pl.concat(parts)} if parts else {}


def _recorded(mix: Mix | None) -> dict[str, Any] | None:
    return None if mix is None else mix.as_dict()


def fit(
    data: TrainingSet,
    settings: TrainSettings,
    out: Path,
    label_names: Sequence[str] | None = None,
    inputs: dict[str, Any] | None = None,
    say: Say = silent,
) -> TextClassifier:
    """Fit on `data`, save the model folder `out`, and return the classifier."""
    if not data.texts:
        raise DataError("no rows to train on")
    names = tuple(label_names) if label_names is not None else tuple(sorted(set(data.labels)))
    encoder_name, encoder_path = resolve_encoder(settings.encoder)
    mixes = mixing(data, settings, names, say)
    row_factors = row_weights_of(data, mixes)
    training: dict[str, Any] = {"inputs": inputs or {}, "rows": data.counts()}
    if settings.method == "setfit":
        training["pairs"] = settings.pairs
    info = {
        "method": settings.method,
        "created_at": utc_now(),
        "config": asdict(settings) | {"encoder": encoder_name},
        "training": training
        | {f"{source}_weight": _recorded(mixes.get(source)) for source in WEIGHTED},
        "versions": software_versions("torch", "transformers", "sentence-transformers"),
    }
    if settings.method in ("frozen", "fine-tune"):  # fine-tuning starts from this head
        say(f"fitting the head on {len(data.texts)} rows, {len(names)} labels")
        head = fit_linear(
            data.vectors, data.labels, names, settings.c, settings.balanced, factors=row_factors
        )
    if settings.method == "frozen":
        model = TextClassifier(encoder_path, head, encoder_name, info)
        model.save(out, tables=_row_weight_tables(data, mixes))
        return model
    if settings.method == "fine-tune":
        from localgen.classify.finetune import fine_tune

        tuned_encoder, tokenizer, tuned_head = fine_tune(
            encoder_path, data.texts, data.labels, head, settings, say, row_factors
        )
    else:
        from localgen.classify import setfit

        y = np.array([names.index(label) for label in data.labels])
        # Pairs come from the real rows when there are any: pairs of synthetic rows cost
        # SetFit up to 0.14 macro-F1 at weight 1 (docs/measurements.md, "Which classifier");
        # the synthetic rows join the head below, at their weight.
        pair_factors = factors(data.sources, {}) if "real" in data.sources else None
        weights = row_weights(y, len(names), settings.balanced, pair_factors)
        tuned = setfit.tune_encoder(encoder_path, data.texts, data.labels, weights, settings, say)
        say(f"fitting the head on the tuned encoder's vectors of {len(data.texts)} rows")
        tuned_head = fit_linear(
            setfit.encode(tuned, data.texts),
            data.labels,
            names,
            settings.c,
            settings.balanced,
            factors=row_factors,
        )
        tuned_encoder, tokenizer = tuned[0].auto_model, tuned[0].tokenizer
    TextClassifier(encoder_path, tuned_head, encoder_name, info).save(
        out, tuned_encoder, tokenizer, _row_weight_tables(data, mixes)
    )
    return TextClassifier.load(out)


def train(config: TrainConfig, say: Say = silent) -> TextClassifier:
    """`localgen train`: read, embed, fit and save, under the egress guard."""
    real, synthetic = config.real, config.synthetic
    if real is None and synthetic is None and config.documents is None:
        raise DataError(NOTHING_TO_TRAIN)
    columns = (config.text_column, config.label_column)
    real_data = read_labeled(real, *columns) if real is not None else None
    data_warnings([label_conflicts(real_data)], config.strict, say)
    if synthetic is not None and not (synthetic / MANIFEST).is_file():
        raise DataError(f"--synthetic {synthetic}: not a localgen run folder (no {MANIFEST})")
    documents = None if config.documents is None else chosen_documents(config.documents)
    descriptions = label_descriptions(config.task, config.settings)
    if documents is not None and documents.height == 0:
        raise DataError(f"--documents {config.documents}: no rows chosen to train on")
    check_model_out(config.out)
    with egress_guard():
        encoder = load_encoder(config.settings.encoder)
        data = training_set(
            encoder, real_data, synthetic, config.rows, say, documents, descriptions
        )
        inputs = {
            "task": None if config.task is None else str(config.task),
            "real": None if real is None else str(real),
            "synthetic": None if synthetic is None else str(synthetic),
            "documents": None if config.documents is None else str(config.documents),
            "rows": config.rows,
        }
        return fit(data, config.settings, config.out, inputs=inputs, say=say)


def trained_message(model: TextClassifier) -> str:
    """The line `localgen train` ends with: what the model learned from."""
    counts = model.info["training"]["rows"]
    parts = [f"{sum(c.values())} {source}" for source, c in counts.items()]
    line = f"trained on {' + '.join(parts)} rows, {len(model.labels)} labels"
    for source in WEIGHTED:
        mix = model.info["training"].get(f"{source}_weight")
        if mix:
            line += f"; {ROWS_OF[source]} weigh {weight_phrase(mix)}"
    return line


def weight_phrase(mix: dict[str, Any]) -> str:
    """What a source's rows weigh, as model.json records it (`Mix.as_dict`), in words."""
    if mix["setting"] in ("fit", "channel"):
        low = min(entry["min"] for entry in mix["per_label"].values())
        high = max(entry["max"] for entry in mix["per_label"].values())
        return f"{low:.2f}-{high:.2f} by how well each fits its label (mean {mix['chosen']:.2f})"
    how = " (chosen by cross-validation on the real rows)" if mix["setting"] == "auto" else ""
    return f"{mix['chosen']:g}{how}"


def check_known(data: LabeledData, model: TextClassifier) -> None:
    """Fail when the test data has labels the model cannot predict."""
    check_labels(data, model.labels, "the model's labels", "it was trained on")


def evaluate(
    model_dir: Path,
    test: Path,
    text_column: str = "text",
    label_column: str = "label",
    resamples: int = RESAMPLES,
    say: Say = silent,
    strict: bool = False,
) -> dict[str, Any]:
    """`localgen evaluate`: scores of a saved model on a labeled file."""
    model = TextClassifier.load(model_dir)
    data = read_labeled(test, text_column, label_column)
    check_known(data, model)
    data_warnings([label_conflicts(data)], strict, say)
    with egress_guard():
        say(f"classifying {data.frame.height} rows")
        predicted = model.predict(data.frame["text"].to_list())
    result = score(data.frame["label"].to_list(), predicted, resamples=resamples)
    return {"model": str(model_dir), "test": str(test)} | result


def predict(model_dir: Path, path: Path, text_column: str = "text") -> pl.DataFrame:
    """`localgen predict`: the file's rows with `label`, `probability` and one
    `p_<label>` column per label."""
    model = TextClassifier.load(model_dir)
    frame = read_texts(path, text_column)
    with egress_guard():
        proba = model.proba(frame["text"].to_list())
    best = proba.argmax(axis=1)
    return frame.select("text").with_columns(
        pl.Series("label", [model.labels[i] for i in best], dtype=pl.Utf8),
        pl.Series("probability", proba[np.arange(len(best)), best].round(4)),
        *(pl.Series(f"p_{name}", proba[:, j].round(4)) for j, name in enumerate(model.labels)),
    )


TEXT_WIDTH = 66  # of the text in the table: a line stays within 100 columns


def render_predictions(frame: pl.DataFrame, fmt: str = "table") -> str:
    """Predictions as a table for reading, or one JSON line / CSV row per text."""
    if fmt == "jsonl":
        return "\n".join(json.dumps(row, ensure_ascii=False) for row in frame.iter_rows(named=True))
    if fmt == "csv":
        return frame.write_csv().rstrip("\n")
    lines = [f"{'label':<20} {'prob':>5}  text"]
    for text, label, p in frame.select("text", "label", "probability").iter_rows():
        short = text if len(text) <= TEXT_WIDTH else text[: TEXT_WIDTH - 1] + "…"
        lines.append(f"{label[:20]:<20} {p:>5.2f}  {short}")
    return "\n".join(lines)
