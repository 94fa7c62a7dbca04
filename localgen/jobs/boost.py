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

The validation data chooses the anchors and judges the rounds, so its score is
optimistic; `--test` gives the score on data no round has seen. Layout of the folder:
`round-N/` (a run folder each), `round-N.anchors.csv` (its targets),
`round-N.real-and-anchors.csv` (what its curation compares with), `models/round-N/` (the
classifier of each round), `model/` (the final classifier) and `boost.json` (the curve).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import polars as pl

from localgen.artifacts import utc_now, write_json, write_table
from localgen.classify.evaluation import score
from localgen.classify.train import TrainingSet, fit, load_encoder, training_set
from localgen.config import BoostConfig, CurateConfig, GenerateConfig
from localgen.curation.curate import curate
from localgen.data import read_task_data
from localgen.engines.loader import check_settings, load_engine, resolve_engine_model
from localgen.errors import DataError
from localgen.generation.generate import generate
from localgen.models.resolve import ModelRef
from localgen.offline import egress_guard
from localgen.planning.task import load_task
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


def boost(
    config: BoostConfig,
    say: Say = silent,
    engine: Any = None,
    model_ref: ModelRef | None = None,
) -> dict[str, Any]:
    """Run the rounds; returns boost.json's content."""
    if config.settings.fine_tune:
        raise ValueError("boost retrains a frozen-encoder head each round, not a fine-tuned one")
    started = time.monotonic()
    task = load_task(config.task_path)
    columns = (config.text_column, config.label_column, task.label_names)
    real = read_task_data(config.real, *columns)
    val = read_task_data(config.validation, *columns)
    test = None if config.test is None else read_task_data(config.test, *columns)
    if config.out.exists() and not config.out.is_dir():
        raise DataError(f"--out {config.out} is a file; give a folder")
    check_settings(config.engine)
    labels = task.label_names
    truth = val.frame["label"].to_list()

    def user_columns(frame: pl.DataFrame) -> pl.DataFrame:
        """Examples under the column names of the user's files, which generate reads."""
        return frame.select(
            pl.col("text").alias(config.text_column), pl.col("label").alias(config.label_column)
        )

    owns_engine = engine is None
    with egress_guard(config.engine.allow_hosts) as audit:
        encoder = load_encoder(config.settings.encoder)
        real_set = training_set(encoder, real, None, say=say)
        say(f"embedding {val.frame.height} validation rows")
        val_vectors = encoder.encode(val.frame["text"].to_list())
        test_vectors = None if test is None else encoder.encode(test.frame["text"].to_list())
        models = config.out / "models"
        current = fit(real_set, config.settings, models / "round-0", labels)
        best = _score(current, val_vectors, truth)["macro_f1"]["value"]
        kept = real_set
        curve: list[dict[str, Any]] = [
            {
                "round": 0,
                "added_rows": 0,
                "train_rows": len(kept.labels),
                "validation_macro_f1": best,
                "kept": True,
            }
        ]
        if test is not None and test_vectors is not None:
            curve[0]["test_macro_f1"] = _score(
                current, test_vectors, test.frame["label"].to_list()
            )["macro_f1"]["value"]
        say(_curve_line(curve[0]))
        try:
            for number in range(1, config.rounds + 1):
                folder = config.out / f"round-{number}"
                proba = current.head.proba(val_vectors)
                chosen = pick_targets(proba, current.labels, truth, config.targets)
                anchors = val.frame[chosen]
                config.out.mkdir(parents=True, exist_ok=True)
                anchors_file = config.out / f"round-{number}.anchors.csv"
                write_table(user_columns(anchors), anchors_file)
                # Curation treats the anchors as real data too: a copy of one is dropped.
                known = config.out / f"round-{number}.real-and-anchors.csv"
                write_table(user_columns(pl.concat([real.frame, anchors])), known)
                if engine is None:
                    model_ref = model_ref or resolve_engine_model(config.engine, config.model, say)
                    engine = load_engine(config.engine, model_ref, say)
                generated = generate(
                    GenerateConfig(
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
                        overwrite=config.overwrite,
                        quiet=True,
                    ),
                    engine=engine,
                    model=model_ref,
                    say=silent,
                )
                curation = curate(
                    CurateConfig(
                        run_dir=folder,
                        real=known,
                        eval=config.test,
                        text_column=config.text_column,
                        label_column=config.label_column,
                    )
                )
                rows = pl.read_parquet(folder / "curated.parquet")
                entry: dict[str, Any] = {
                    "round": number,
                    "targets": len(chosen),
                    "targets_misclassified": int(
                        (
                            np.array(current.head.predict(val_vectors[chosen]))
                            != np.array(truth)[chosen]
                        ).sum()
                    ),
                    "generated": generated.written,
                    "added_rows": rows.height,
                }
                if rows.height == 0:
                    entry |= {"kept": False, "why": "curation kept no rows"}
                    curve.append(entry)
                    say(_curve_line(entry))
                    continue
                vectors = encode_cached(
                    encoder,
                    rows["id"].to_list(),
                    rows["text"].to_list(),
                    cache_file(folder, encoder),
                )
                candidate_set = kept.join(
                    TrainingSet(
                        rows["text"].to_list(),
                        rows["label"].to_list(),
                        vectors,
                        ["synthetic"] * rows.height,
                    )
                )
                candidate = fit(candidate_set, config.settings, models / f"round-{number}", labels)
                f1 = _score(candidate, val_vectors, truth)["macro_f1"]["value"]
                entry |= {
                    "train_rows": len(candidate_set.labels),
                    "validation_macro_f1": f1,
                    "kept": f1 > best + config.min_gain,
                    "curation_dropped": curation["counts"]["dropped"],
                }
                if test is not None and test_vectors is not None:
                    entry["test_macro_f1"] = _score(
                        candidate, test_vectors, test.frame["label"].to_list()
                    )["macro_f1"]["value"]
                if entry["kept"]:
                    best, kept, current = f1, candidate_set, candidate
                curve.append(entry)
                say(_curve_line(entry))
        finally:
            if owns_engine and engine is not None:
                engine.close()
        final = fit(kept, config.settings, config.out / "model", labels)
    result = {
        "format_version": FORMAT_VERSION,
        "created_at": utc_now(),
        "task": task.name,
        "real": {"path": str(config.real), "rows": real.frame.height},
        "validation": {"path": str(config.validation), "rows": val.frame.height},
        "test": None if test is None else {"path": str(config.test), "rows": test.frame.height},
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
            "train_rows": len(kept.labels),
            "synthetic_rows": kept.sources.count("synthetic"),
            "validation_macro_f1": best,
            "labels": list(final.labels),
        },
        "egress": audit.as_dict(),
        "seconds": round(time.monotonic() - started, 1),
    }
    write_json(config.out / BOOST, result)
    return result


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
        f"({final['synthetic_rows']} synthetic), validation macro-F1 "
        f"{final['validation_macro_f1']:.3f}"
    )
    return "\n".join(lines)
