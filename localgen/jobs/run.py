"""`localgen run`: the whole job, and the answer to "did the synthetic rows help?".

generate (with the real training data as seed data; resumes) -> curate (against the real
training data, and against the test data for contamination; with `keep`, in rounds until
enough rows pass: `localgen.jobs.keep`) -> with documents, label them on the same engine
(`localgen.documents`) -> train classifiers on the same encoder: real only, synthetic
only, real + synthetic (and real + documents, and all three) -> score each on the same
real test data, with bootstrap intervals and paired differences -> write
`comparison.json` and the report, which shows the comparison.

Layout of the output folder: the run folder of `localgen generate`, plus `models/real`,
`models/synthetic`, `models/combined` (`models/documents`, `models/all` and the label
folder `documents/`), `comparison.json`, `metrics.json`, `report.html`.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from localgen.artifacts import utc_now, write_json
from localgen.classify.evaluation import paired_difference, score
from localgen.classify.train import (
    ROWS_OF,
    WEIGHTED,
    TrainingSet,
    check_known,
    fit,
    label_descriptions,
    load_encoder,
    training_set,
    weight_phrase,
)
from localgen.config import (
    METHOD_TITLES,
    RESAMPLES,
    LabelConfig,
    ReportConfig,
    RunConfig,
    TrainSettings,
)
from localgen.data import (
    LabeledData,
    data_warnings,
    label_conflicts,
    read_documents,
    read_task_data,
    shared_texts,
)
from localgen.documents.label import (
    LabelFolder,
    LabelResult,
    chosen_documents,
    documents_source,
    is_label_folder,
    label_documents,
)
from localgen.engines.loader import resolve_engine_model, running
from localgen.generation.generate import GenerateResult
from localgen.generation.store import COMPARISON
from localgen.jobs.keep import generate_and_curate
from localgen.locks import writing
from localgen.offline import egress_guard
from localgen.planning.task import FROM_DOCUMENTS, Task, load_task
from localgen.progress import Say, silent
from localgen.report.report import REPORT, write_report

FORMAT_VERSION = 1
# (name, title, the sources it trains on); the last two only where there are documents.
SETS = (
    ("real", "real only", ("real",)),
    ("synthetic", "synthetic only", ("synthetic",)),
    ("combined", "real + synthetic", ("real", "synthetic")),
    ("descriptions", "real + label descriptions", ("real", "descriptions")),
    ("documents", "real + documents", ("real", "documents")),
    ("all", "all of them", ("real", "descriptions", "documents", "synthetic")),
)
OPTIONAL = {"descriptions", "documents"}  # sources a run may lack
WIDTH = max(len(title) for _, title, _ in SETS)  # of the first column of the table
DOCUMENTS = "documents"  # the label folder inside the run folder, when run labels them


def compare(
    data: TrainingSet,
    test: LabeledData,
    test_vectors: Any,  # None: each model embeds the test texts (its encoder was trained)
    label_names: list[str],
    settings: TrainSettings,
    models_dir: Path,
    inputs: dict[str, Any],
    resamples: int = RESAMPLES,
    say: Say = silent,
) -> dict[str, Any]:
    """Train on each training set, score on `test`; the comparison as a dict."""
    truth = test.frame["label"].to_list()
    texts = test.frame["text"].to_list()
    results: dict[str, Any] = {}
    predictions: dict[str, list[str]] = {}
    given = OPTIONAL & set(data.sources)
    for name, title, sources in SETS:
        missing = (OPTIONAL & set(sources)) - given
        if (name == "all" and not given) or (name != "all" and missing):
            continue  # a source not given; all of them: only when it adds one
        part = data.subset(*sources)
        if len(set(part.labels)) < 2:
            results[name] = {"title": title, "skipped": "fewer than two labels to train on"}
            continue
        say(f"training on {title}: {len(part.labels)} rows")
        model = fit(part, settings, models_dir / name, label_names, inputs | {"set": name}, say)
        check_known(test, model)
        predicted = (
            model.predict(texts) if test_vectors is None else model.head.predict(test_vectors)
        )
        predictions[name] = predicted
        results[name] = (
            {
                "title": title,
                "training_rows": part.counts(),
                "train_rows": len(part.labels),
                "model": str(models_dir / name),
            }
            | {
                f"{source}_weight": model.info["training"].get(f"{source}_weight")
                for source in WEIGHTED
            }
            | score(truth, predicted, resamples=resamples)
        )
    differences = {}
    for name in ("combined", "synthetic", "descriptions", "documents", "all"):
        if name in predictions and "real" in predictions:
            differences[f"{name}_minus_real"] = paired_difference(
                truth, predictions["real"], predictions[name], resamples=resamples
            )
    return {"results": results, "differences": differences}


def _train_and_compare(
    config: RunConfig,
    task_labels: list[str],
    real: LabeledData,
    test: LabeledData,
    documents: Path | None,
    say: Say,
) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """Train the classifiers on the curated rows (and the chosen documents) and score
    them: (the outcome, the encoder, the egress audit)."""
    gen = config.generation
    inputs = {"real": str(gen.seed_data), "synthetic": str(gen.out), "rows": "curated"}
    chosen = None if documents is None else chosen_documents(documents)  # a label folder
    if documents is not None:
        inputs["documents"] = str(documents)
    with egress_guard() as audit:
        encoder = load_encoder(config.settings.encoder)
        descriptions = label_descriptions(gen.task_path, config.settings)
        data = training_set(encoder, real, gen.out, "curated", say, chosen, descriptions)
        test_vectors = None
        if not config.settings.tunes_encoder:  # else each model brings its own encoder
            say(f"embedding {test.frame.height} test rows")
            test_vectors = encoder.encode(test.frame["text"].to_list())
        outcome = compare(
            data,
            test,
            test_vectors,
            task_labels,
            config.settings,
            gen.out / "models",
            inputs,
            config.resamples,
            say,
        )
    return outcome, encoder, audit.as_dict()


def _comparison(
    config: RunConfig,
    task_name: str,
    real: LabeledData,
    test: LabeledData,
    result: GenerateResult,
    curation: dict[str, Any],
    outcome: dict[str, Any],
) -> dict[str, Any]:
    """comparison.json: the inputs, the settings and the scores of the three classifiers."""
    gen = config.generation
    return {
        "format_version": FORMAT_VERSION,
        "created_at": utc_now(),
        "task": task_name,
        "real": {"path": str(gen.seed_data), "rows": real.frame.height},
        "test": {"path": str(config.test), "rows": test.frame.height},
        "synthetic": {
            "generated": result.written,
            "kept": curation["counts"]["kept"],
            "model": (result.manifest.get("model") or {}).get("name"),
            # rows each curation rule removed (the report and curation.json say which)
            "removed_by": {
                rule: entry["dropped"]
                for rule, entry in curation["rules"].items()
                if entry.get("enabled") and entry.get("dropped")
            },
        },
        "settings": {
            "encoder": config.settings.encoder or "builtin",
            "method": config.settings.method,
            "pairs": config.settings.pairs if config.settings.method == "setfit" else None,
            "c": config.settings.c,
            "balanced": config.settings.balanced,
            "synthetic_weight": config.settings.synthetic_weight,
            "descriptions_weight": config.settings.descriptions_weight,
        },
        **outcome,
        "report": str(gen.out / REPORT),
    }


def run(
    config: RunConfig, say: Say = silent, engine: Any = None, model: Any = None
) -> dict[str, Any]:
    """Generate, curate, train three ways and compare; returns comparison.json's content.
    Pass a loaded `engine` (and its `model`) to reuse it across runs."""
    gen = config.generation
    if gen.seed_data is None:
        raise ValueError("the run needs real training data (generation.seed_data)")
    started = time.monotonic()
    # Read and check every input before the long part.
    task = load_task(gen.task_path)
    columns = (gen.text_column, gen.label_column, task.label_names)
    real = read_task_data(gen.seed_data, *columns)
    test = read_task_data(config.test, *columns)
    warnings = [label_conflicts(test), shared_texts(real, test)]
    if config.documents is not None:  # read now: a bad file fails before the long part
        documents = (
            chosen_documents(config.documents)
            if is_label_folder(config.documents)
            else read_documents(config.documents, gen.text_column)[0]
        )
        as_data = LabeledData(documents.select("text", label=None), str(config.documents), 0)
        warnings.append(shared_texts(as_data, test))
        if FROM_DOCUMENTS in (gen.strategy or tuple(task.generation.strategy)):
            # the same documents are what the from-documents strategy shows
            gen = dataclasses.replace(gen, documents=documents_source(config.documents))
            config = dataclasses.replace(config, generation=gen)
    # generate says the same of the real rows (its --seed-data)
    data_warnings(warnings, gen.strict, say)
    with writing(gen.out, "run"):  # generate, curate and report take it again: one writer
        return _run(config, task, real, test, started, say, engine, model)


def _run(
    config: RunConfig,
    task: Task,
    real: LabeledData,
    test: LabeledData,
    started: float,
    say: Say,
    engine: Any,
    model: Any,
) -> dict[str, Any]:
    gen = config.generation
    timings: dict[str, float] = {}

    def stage(number: int, title: str) -> float:
        say(f"{number}/3 {title}")
        return time.monotonic()

    t0 = stage(1, "generating and curating" + ("" if config.keep is None else " in rounds"))
    labelled = config.documents is None or is_label_folder(config.documents)
    labels = config.documents if labelled else None
    with ExitStack() as holding:
        if not labelled and engine is None:  # one engine for the rows and the documents
            model = model or resolve_engine_model(gen.engine, gen.model, say)
            with egress_guard(gen.engine.allow_hosts):  # started as generate starts it
                engine = holding.enter_context(running(gen.engine, model, None, say))
        result, curation, rounds = generate_and_curate(config, say, engine, model)
        if config.documents is not None and labels is None:
            say(f"labelling the documents of {config.documents}")
            labels = _label(config, engine, say).out
    timings["generate_curate_s"] = round(time.monotonic() - t0, 1)

    t0 = stage(2, "training and evaluating")
    outcome, encoder, egress = _train_and_compare(config, task.label_names, real, test, labels, say)
    timings["train_evaluate_s"] = round(time.monotonic() - t0, 1)
    comparison = _comparison(config, task.name, real, test, result, curation, outcome)
    comparison["synthetic"]["keep"] = rounds
    if labels is not None:
        comparison["documents"] = _documents_entry(labels)
    comparison["egress"] = egress
    write_json(gen.out / COMPARISON, comparison)

    t0 = stage(3, "writing the report")
    write_report(
        ReportConfig(gen.out, gen.seed_data, "curated", gen.text_column, gen.label_column),
        encoder,
    )
    timings["report_s"] = round(time.monotonic() - t0, 1)
    timings["total_s"] = round(time.monotonic() - started, 1)
    comparison["timings"] = timings
    write_json(gen.out / COMPARISON, comparison)
    return comparison


def _label(config: RunConfig, engine: Any, say: Say) -> LabelResult:
    """The run's documents labelled into the run folder, on the run's engine."""
    gen = config.generation
    assert config.documents is not None
    label_config = LabelConfig(
        documents=config.documents,
        task_path=gen.task_path,
        out=gen.out / DOCUMENTS,
        seed_data=gen.seed_data,
        text_column=gen.text_column,
        label_column=gen.label_column,
        seed=gen.seed,
        model=gen.model,
        engine=gen.engine,
        overwrite=gen.overwrite,
        quiet=gen.quiet,
    )
    result = label_documents(label_config, engine=engine, say=say)
    say(result.message())
    return result


def _documents_entry(folder: Path) -> dict[str, Any]:
    """What comparison.json says of the documents: where, how many, how many chosen."""
    manifest = LabelFolder(folder).read_manifest() or {}
    choice = manifest.get("choice") or {}
    return {
        "labels": str(folder),
        "path": (manifest.get("documents") or {}).get("path"),
        "labelled": choice.get("documents"),
        "chosen": choice.get("chosen"),
        "chosen_per_label": {n: e["chosen"] for n, e in choice.get("per_label", {}).items()},
        "model": (manifest.get("model") or {}).get("name"),
    }


def _ci(entry: dict[str, Any]) -> str:
    low, high = entry.get("ci", [None, None])
    return f"{entry['value']:.3f}" + ("" if low is None else f" [{low:.3f}, {high:.3f}]")


def comparison_table(comparison: dict[str, Any]) -> str:
    """The comparison as text: one line per training set, then the differences."""
    method = comparison["settings"].get("method", "frozen")
    lines = [
        f"macro-F1 on {comparison['test']['rows']} real test rows "
        f"(95% bootstrap intervals in brackets); classifier: {METHOD_TITLES[method]}",
        f"{'trained on':<{WIDTH}} {'rows':>6}  {'macro-F1':<24}  {'accuracy':<24}",
    ]
    for name, _title, _ in SETS:
        if name not in comparison["results"]:
            continue
        entry = comparison["results"][name]
        if "skipped" in entry:
            lines.append(f"{entry['title']:<{WIDTH}} {'-':>6}  skipped: {entry['skipped']}")
            continue
        lines.append(
            f"{entry['title']:<{WIDTH}} {entry['train_rows']:>6}  {_ci(entry['macro_f1']):<24}  "
            f"{_ci(entry['accuracy']):<24}"
        )
    synthetic = comparison["synthetic"]
    removed = ", ".join(f"{r} {n}" for r, n in synthetic.get("removed_by", {}).items())
    lines.append(
        f"synthetic rows: {synthetic['kept']} of {synthetic['generated']} kept"
        + (f" (removed: {removed})" if removed else "")
    )
    keep = synthetic.get("keep")
    if keep:
        planned = sum(entry["planned"] for entry in keep["per_label"].values())
        short = [lab for lab, e in keep["per_label"].items() if e["passed"] < keep["keep"]]
        lines.append(
            f"--keep {keep['keep']}: {keep['rounds']} round(s), {planned} rows planned; "
            + (f"short of {keep['keep']}: {', '.join(short)}" if short else "every label has them")
        )
    documents = comparison.get("documents")
    if documents:
        chosen = ", ".join(f"{n} {c}" for n, c in documents["chosen_per_label"].items())
        lines.append(
            f"documents: {documents['chosen']} of {documents['labelled']} labelled chosen "
            f"({chosen}); labels in {documents['labels']}"
        )
    titles = {name: title for name, title, _ in SETS}
    for name in ("combined", "descriptions", "documents", "all"):
        for source in WEIGHTED:
            mix = comparison["results"].get(name, {}).get(f"{source}_weight")
            if mix:
                lines.append(f"{ROWS_OF[source]} weigh {weight_phrase(mix)} in {titles[name]}")
    for key, diff in comparison["differences"].items():
        what = titles[key.removesuffix("_minus_real")]
        low, high = diff.get("ci", [None, None])
        interval = "" if low is None else f" [{low:+.3f}, {high:+.3f}]"
        lines.append(
            f"{what} minus real only: {diff['macro_f1_difference']:+.3f}{interval}"
            + (
                f", better in {diff['b_better_share']:.0%} of resamples"
                if "b_better_share" in diff
                else ""
            )
        )
    lines.append(f"report: {comparison['report']}")
    return "\n".join(lines)
