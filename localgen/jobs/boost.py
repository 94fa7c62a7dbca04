"""`localgen boost`: generate more of what the classifier gets wrong, and keep what helps.

Round 0 trains the classifier (frozen encoder + linear head) on the real training data and
scores it on the real validation data. Each round then takes the validation examples the
classifier gets wrong, or is least sure of (lowest probability of the true label), and
asks the LLM for close variants of them with their true label: the contrastive strategy
anchored on them (`localgen.planning.plan`). The new rows are curated (copies and near-copies of
the anchors or the training data are dropped, and rows too close to --test), the
classifier is retrained on the real rows plus every row kept so far, and the round is
kept only if macro-F1 on validation improved (by more than `min_gain`); otherwise its
rows are set aside.

With --documents (a label folder or a labeled file), the chosen documents join the real
rows from round 0 on, at the weight `--documents-weight` gives them.

The validation data chooses the anchors and judges the rounds, so its score is
optimistic; `--test` gives the score on data no round has seen. Layout of the folder:
`round-N/` (a run folder each), `round-N.anchors.csv` (its targets),
`round-N.real-and-anchors.csv` (what its curation compares with), `models/round-N/` (the
classifier of each round), `model/` (the final classifier) and `boost.json` (the curve).
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from localgen.artifacts import utc_now, write_json, write_table
from localgen.classify.evaluation import score
from localgen.classify.train import TrainingSet, fit, load_encoder, training_set
from localgen.config import (
    BoostConfig,
    CurateConfig,
    EngineSettings,
    GenerateConfig,
    TrainSettings,
)
from localgen.curation.curate import curate
from localgen.data import (
    LabeledData,
    check_labels,
    data_warnings,
    label_conflicts,
    read_task_data,
    shared_texts,
)
from localgen.documents.label import chosen_documents
from localgen.engines.base import Engine
from localgen.engines.loader import check_settings, running
from localgen.errors import DataError
from localgen.generation.generate import GenerateResult, generate
from localgen.generation.prepare import Prepared, prepare
from localgen.generation.store import CURATED
from localgen.locks import writing
from localgen.models.resolve import ModelRef
from localgen.offline import egress_guard
from localgen.planning.task import Task, load_task
from localgen.progress import Say, silent
from localgen.vectors.encoder import cache_file, encode_cached

BOOST = "boost.json"
FORMAT_VERSION = 1


def pick_targets(proba: np.ndarray, labels: tuple[str, ...], truth: list[str], n: int) -> list[int]:
    """Rows to target: misclassified first, then the least confident, each by the
    probability given to the true label (lowest first)."""
    index = {name: i for i, name in enumerate(labels)}
    true_p = proba[np.arange(len(truth)), [index[t] for t in truth]]
    wrong = proba.argmax(axis=1) != np.array([index[t] for t in truth])
    order = np.lexsort((true_p, ~wrong))  # wrong (False < True after negation) first
    return [int(i) for i in order[:n]]


def _score(model: Any, vectors: np.ndarray, truth: list[str]) -> dict[str, Any]:
    return score(truth, model.head.predict(vectors), resamples=0)


def _rounds_settings(config: BoostConfig) -> TrainSettings:
    """The rounds are judged by a frozen-encoder head (seconds each); `--method` is how
    the final classifier is trained on the rows the rounds kept."""
    return replace(config.settings, method="frozen")


def _final_scores(
    final: Any, state: _State, inputs: _Inputs, config: BoostConfig
) -> dict[str, Any]:
    """The final classifier's method and, when its encoder was trained, its own scores
    (the rounds' scores are the frozen head's)."""
    out: dict[str, Any] = {"method": config.settings.method}
    if not config.settings.tunes_encoder:
        return out
    truth = inputs.validation.frame["label"].to_list()
    predicted = final.predict(inputs.validation.frame["text"].to_list())
    out["tuned_validation_macro_f1"] = score(truth, predicted, resamples=0)["macro_f1"]["value"]
    if inputs.test is not None:
        test_truth = inputs.test.frame["label"].to_list()
        predicted = final.predict(inputs.test.frame["text"].to_list())
        out["tuned_test_macro_f1"] = score(test_truth, predicted, resamples=0)["macro_f1"]["value"]
    return out


@dataclass
class _Inputs:
    """Every file boost reads, read and checked before any work."""

    task: Task
    real: LabeledData
    validation: LabeledData
    test: LabeledData | None
    documents: pl.DataFrame | None  # chosen documents (id, text, label), from round 0 on

    @classmethod
    def read(cls, config: BoostConfig) -> _Inputs:
        task = load_task(config.task_path)
        columns = (config.text_column, config.label_column, task.label_names)
        test = None if config.test is None else read_task_data(config.test, *columns)
        if config.out.exists() and not config.out.is_dir():
            raise DataError(f"--out {config.out} is a file; give a folder")
        documents = None
        if config.documents is not None:
            documents = chosen_documents(config.documents)
            if documents.height == 0:
                raise DataError(f"--documents {config.documents}: no rows chosen to train on")
            check_labels(LabeledData(documents, str(config.documents), 0), task.label_names)
        return cls(
            task,
            read_task_data(config.real, *columns),
            read_task_data(config.validation, *columns),
            test,
            documents,
        )

    def warnings(self) -> list[str | None]:
        """Conflicting labels in any file; training texts in the validation or test data."""
        files = [self.real, self.validation] + ([self.test] if self.test else [])
        found = [label_conflicts(data) for data in files]
        found.append(shared_texts(self.real, self.validation, "validation"))
        if self.test is not None:
            found.append(shared_texts(self.real, self.test))
        if self.documents is not None:
            documents = LabeledData(self.documents, "--documents", 0)
            found.append(shared_texts(documents, self.validation, "validation"))
            if self.test is not None:
                found.append(shared_texts(documents, self.test))
        return found


@dataclass
class _State:
    """Where the rounds stand: the best classifier so far and what it was trained on."""

    current: Any  # TextClassifier
    kept: TrainingSet
    best: float  # its validation macro-F1
    val_vectors: np.ndarray
    test_vectors: np.ndarray | None

    def scores(self, model: Any, inputs: _Inputs) -> dict[str, float]:
        """Validation (and test) macro-F1 of a classifier."""
        truth = inputs.validation.frame["label"].to_list()
        out = {"validation_macro_f1": _score(model, self.val_vectors, truth)["macro_f1"]["value"]}
        if inputs.test is not None and self.test_vectors is not None:
            test_truth = inputs.test.frame["label"].to_list()
            out["test_macro_f1"] = _score(model, self.test_vectors, test_truth)["macro_f1"]["value"]
        return out


def _user_columns(frame: pl.DataFrame, config: BoostConfig) -> pl.DataFrame:
    """Examples under the column names of the user's files, which generate reads."""
    return frame.select(
        pl.col("text").alias(config.text_column), pl.col("label").alias(config.label_column)
    )


def _write_anchors(
    number: int, anchors: pl.DataFrame, inputs: _Inputs, config: BoostConfig
) -> tuple[Path, Path]:
    """The round's targets, and the real data plus targets its curation compares with (a
    copy of an anchor is dropped like a copy of a real example)."""
    config.out.mkdir(parents=True, exist_ok=True)
    anchors_file = config.out / f"round-{number}.anchors.csv"
    write_table(_user_columns(anchors, config), anchors_file)
    known = config.out / f"round-{number}.real-and-anchors.csv"
    write_table(_user_columns(pl.concat([inputs.real.frame, anchors]), config), known)
    return anchors_file, known


@dataclass
class _Engine:
    """The engine the rounds share: the one given, else started by the first round on
    the model its preparation resolved, and closed when the rounds end."""

    settings: EngineSettings
    holding: ExitStack
    say: Say
    engine: Engine | None = None
    model: ModelRef | None = None

    def for_round(self, prepared: Prepared) -> Engine:
        if self.engine is None:
            assert prepared.model is not None, "prepare resolves the model"
            self.model = prepared.model
            started = running(self.settings, prepared.model, None, self.say)
            self.engine = self.holding.enter_context(started)
        return self.engine


def _variants(
    number: int, anchors_file: Path, known: Path, config: BoostConfig, shared: _Engine
) -> tuple[GenerateResult, dict[str, Any]]:
    """Generate the round's variants of its anchors (a resumable run folder), and curate
    them against the real data and the anchors (and --test, for contamination)."""
    folder = config.out / f"round-{number}"
    asked = GenerateConfig(
        task_path=config.task_path,
        out=folder,
        count=config.variants,
        seed=config.seed + number,
        seed_data=config.real,
        anchors=anchors_file,
        text_column=config.text_column,
        label_column=config.label_column,
        model=config.model,
        engine=config.engine,
        max_retries=config.max_retries,
        check_labels=config.check_labels,
        fit_margin=config.fit_margin,
        overwrite=config.overwrite,
        quiet=True,
    )
    prepared = prepare(asked, shared.say, model=shared.model, engine=shared.engine)
    generated = generate(prepared, engine=shared.for_round(prepared))
    curation = curate(
        CurateConfig(
            run_dir=folder,
            real=known,
            eval=config.test,
            text_column=config.text_column,
            label_column=config.label_column,
        )
    )
    return generated, curation


def _round(
    number: int,
    state: _State,
    inputs: _Inputs,
    config: BoostConfig,
    shared: _Engine,
    encoder: Any,
) -> dict[str, Any]:
    """Generate variants of this round's targets, curate them, retrain, and keep the
    round when validation macro-F1 rises by more than min_gain; its curve entry."""
    folder = config.out / f"round-{number}"
    truth = inputs.validation.frame["label"].to_list()
    proba = state.current.head.proba(state.val_vectors)
    chosen = pick_targets(proba, state.current.labels, truth, config.targets)
    anchors_file, known = _write_anchors(number, inputs.validation.frame[chosen], inputs, config)
    generated, curation = _variants(number, anchors_file, known, config, shared)
    rows = pl.read_parquet(folder / CURATED)
    predicted = np.array(state.current.head.predict(state.val_vectors[chosen]))
    entry: dict[str, Any] = {
        "round": number,
        "targets": len(chosen),
        "targets_misclassified": int((predicted != np.array(truth)[chosen]).sum()),
        "generated": generated.written,
        "added_rows": rows.height,
    }
    if rows.height == 0:
        return entry | {"kept": False, "why": "curation kept no rows"}
    ids, texts = rows["id"].to_list(), rows["text"].to_list()
    vectors = encode_cached(encoder, ids, texts, cache_file(folder, encoder))
    fits = rows["fit_posterior"].to_list() if "fit_posterior" in rows.columns else []
    sources = ["synthetic"] * rows.height
    added = TrainingSet(texts, rows["label"].to_list(), vectors, sources, fits=fits)
    candidate_set = state.kept.join(added)
    labels = inputs.task.label_names
    candidate = fit(
        candidate_set, _rounds_settings(config), config.out / "models" / f"round-{number}", labels
    )
    scores = state.scores(candidate, inputs)
    f1 = scores["validation_macro_f1"]
    entry |= {
        "train_rows": len(candidate_set.labels),
        **scores,
        "kept": f1 > state.best + config.min_gain,
        "curation_dropped": curation["counts"]["dropped"],
    }
    if entry["kept"]:
        state.best, state.kept, state.current = f1, candidate_set, candidate
    return entry


def boost(
    config: BoostConfig,
    say: Say = silent,
    engine: Engine | None = None,
    model_ref: ModelRef | None = None,
) -> dict[str, Any]:
    """Run the rounds; returns boost.json's content. Pass a loaded `engine` (and its
    `model_ref`) to reuse it."""
    started = time.monotonic()
    inputs = _Inputs.read(config)
    check_settings(config.engine)
    data_warnings(inputs.warnings(), config.strict, say)
    with writing(config.out, "boost"):  # each round's generate and curate lock their own
        return _boost(config, inputs, started, say, engine, model_ref)


def _boost(
    config: BoostConfig,
    inputs: _Inputs,
    started: float,
    say: Say,
    engine: Engine | None,
    model_ref: ModelRef | None,
) -> dict[str, Any]:
    labels = inputs.task.label_names
    with egress_guard(config.engine.allow_hosts) as audit:
        encoder = load_encoder(config.settings.encoder)
        real_set = training_set(encoder, inputs.real, None, say=say, documents=inputs.documents)
        say(f"embedding {inputs.validation.frame.height} validation rows")
        val_vectors = encoder.encode(inputs.validation.frame["text"].to_list())
        test_vectors = None
        if inputs.test is not None:
            test_vectors = encoder.encode(inputs.test.frame["text"].to_list())
        rounds_settings = _rounds_settings(config)
        first = fit(real_set, rounds_settings, config.out / "models" / "round-0", labels)
        state = _State(first, real_set, 0.0, val_vectors, test_vectors)
        baseline = state.scores(first, inputs)
        state.best = baseline["validation_macro_f1"]
        curve: list[dict[str, Any]] = [
            {"round": 0, "added_rows": 0, "train_rows": len(real_set.labels), **baseline}
            | {"kept": True}
        ]
        if inputs.documents is not None:  # the weight round 0 gave them
            curve[0]["documents_weight"] = first.info["training"]["documents_weight"]
        say(_curve_line(curve[0]))
        with ExitStack() as holding:
            shared = _Engine(config.engine, holding, say, engine, model_ref)
            for number in range(1, config.rounds + 1):
                curve.append(_round(number, state, inputs, config, shared, encoder))
                say(_curve_line(curve[-1]))
        if config.settings.tunes_encoder:
            say(f"training the final classifier ({config.settings.method}) on the kept rows")
        final = fit(state.kept, config.settings, config.out / "model", labels, say=say)
        final_scores = _final_scores(final, state, inputs, config)
    result = _result(config, inputs, curve, state, final, started)
    result["final"] |= final_scores
    result["egress"] = audit.as_dict()
    write_json(config.out / BOOST, result)
    return result


def _result(
    config: BoostConfig,
    inputs: _Inputs,
    curve: list[dict[str, Any]],
    state: _State,
    final: Any,
    started: float,
) -> dict[str, Any]:
    """boost.json: the settings, the curve per round and the final classifier."""
    test = inputs.test
    return {
        "format_version": FORMAT_VERSION,
        "created_at": utc_now(),
        "task": inputs.task.name,
        "real": {"path": str(config.real), "rows": inputs.real.frame.height},
        "validation": {"path": str(config.validation), "rows": inputs.validation.frame.height},
        "test": None if test is None else {"path": str(config.test), "rows": test.frame.height},
        "documents": None
        if inputs.documents is None
        else {"path": str(config.documents), "rows": inputs.documents.height},
        "settings": {
            "rounds": config.rounds,
            "targets": config.targets,
            "variants": config.variants,
            "min_gain": config.min_gain,
            "seed": config.seed,
        },
        "curve": curve,
        "final": {
            "model": str(config.out / "model"),
            "train_rows": len(state.kept.labels),
            "synthetic_rows": state.kept.sources.count("synthetic"),
            "documents_rows": state.kept.sources.count("documents"),
            "validation_macro_f1": state.best,
            "labels": list(final.labels),
        },
        "seconds": round(time.monotonic() - started, 1),
    }


def _curve_line(entry: dict[str, Any]) -> str:
    if "validation_macro_f1" not in entry:
        return f"round {entry['round']}: {entry.get('why', '')}"
    parts = [
        f"round {entry['round']}",
        f"+{entry['added_rows']} rows",
        f"validation macro-F1 {entry['validation_macro_f1']:.3f}",
    ]
    if "test_macro_f1" in entry:
        parts.append(f"test {entry['test_macro_f1']:.3f}")
    if entry["round"] > 0:
        parts.append("kept" if entry["kept"] else "discarded (no gain)")
    return "  ".join(parts)


def curve_table(result: dict[str, Any]) -> str:
    """The curve, one line per round, and the final state."""
    has_test = result["test"] is not None
    lines = [
        f"{'round':>5}  {'targets':>7}  {'added':>5}  {'train rows':>10}  {'val macro-F1':>12}"
        + (f"  {'test macro-F1':>13}" if has_test else "")
        + "  kept"
    ]
    for e in result["curve"]:
        val = f"{e['validation_macro_f1']:.3f}" if "validation_macro_f1" in e else "-"
        test = ""
        if has_test:
            test = f"  {e['test_macro_f1']:>13.3f}" if "test_macro_f1" in e else f"  {'-':>13}"
        lines.append(
            f"{e['round']:>5}  {e.get('targets', '-'):>7}  {e['added_rows']:>5}  "
            f"{e.get('train_rows', '-'):>10}  {val:>12}{test}  {'yes' if e['kept'] else 'no'}"
        )
    final = result["final"]
    lines.append(
        f"final model {final['model']}: {final['train_rows']} rows "
        f"({final['synthetic_rows']} synthetic"
        + (f", {final['documents_rows']} documents" if final.get("documents_rows") else "")
        + f"), validation macro-F1 {final['validation_macro_f1']:.3f}"
    )
    if "tuned_validation_macro_f1" in final:
        tuned = f"{final['method']} on the kept rows: validation macro-F1 "
        tuned += f"{final['tuned_validation_macro_f1']:.3f}"
        if "tuned_test_macro_f1" in final:
            tuned += f", test {final['tuned_test_macro_f1']:.3f}"
        lines.append(tuned)
    return "\n".join(lines)
