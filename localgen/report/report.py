"""The data-quality report of a run: metrics.json and a self-contained report.html.

Metrics are computed per label and over the whole run, for the synthetic rows (the
curated ones when `localgen curate` has run) and, side by side, for the real data, so
every number has a reference: counts, lengths, distinct-1/2, self-BLEU, Remote Clique,
Chamfer distance and the similarity of the synthetic rows to the real ones (Li et al.,
EMNLP 2023), plus the curation rates. The HTML embeds its charts as SVG and has no
script, so it opens from disk on a machine with no network.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from statistics import mean, median
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape

from localgen.artifacts import utc_now, write_json, write_text
from localgen.config import ReportConfig
from localgen.data import LabeledData
from localgen.errors import OutputError
from localgen.generation.store import COMPARISON, CURATION, RunFolder
from localgen.locks import writing
from localgen.offline import egress_guard
from localgen.progress import Say, silent
from localgen.report import charts
from localgen.report.metrics import (
    chamfer,
    distinct_n,
    remote_clique,
    self_bleu,
    similarity_to_real,
)
from localgen.text import words
from localgen.vectors.encoder import TextEncoder, cache_file, encode_cached

METRICS = "metrics.json"
REPORT = "report.html"
FORMAT_VERSION = 1
SELF_BLEU_SAMPLE = 300  # self-BLEU is quadratic in the set size: a fixed random sample
# Remote Clique and Chamfer compare every row with every row: above this many rows, a
# fixed random sample of them (at 10,000 rows, well under a second each)
VECTOR_SAMPLE = 10_000
MAP_POINTS = 2000  # points per side (real, synthetic) on the embedding map
TOP_K = 5
MARKUP_SHOWN = 8  # rows the markup rule removed, shown in the report


def set_metrics(texts: Sequence[str], vectors: np.ndarray) -> dict[str, Any]:
    """The metrics of one set of texts (one label, or all)."""
    lengths = [len(words(t)) for t in texts]
    sample = list(texts)
    if len(sample) > SELF_BLEU_SAMPLE:
        sample = random.Random(0).sample(sample, SELF_BLEU_SAMPLE)
    if len(vectors) > VECTOR_SAMPLE:
        vectors = vectors[sorted(random.Random(0).sample(range(len(vectors)), VECTOR_SAMPLE))]
    return {
        "rows": len(texts),
        "words_mean": round(mean(lengths), 2) if lengths else 0.0,
        "words_median": float(median(lengths)) if lengths else 0.0,
        "chars_mean": round(mean(len(t) for t in texts), 1) if texts else 0.0,
        "distinct_1": round(distinct_n(texts, 1), 4),
        "distinct_2": round(distinct_n(texts, 2), 4),
        "self_bleu": round(self_bleu(sample), 4),
        "remote_clique": round(remote_clique(vectors), 4),
        "chamfer": round(chamfer(vectors), 4),
        "sampled": {"self_bleu": len(sample), "remote_clique_chamfer": len(vectors)},
    }


def _block(
    texts: list[str],
    vectors: np.ndarray,
    real_texts: list[str] | None,
    real_vectors: np.ndarray | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"synthetic": set_metrics(texts, vectors), "real": None}
    out["similarity_to_real"] = None
    if real_texts and real_vectors is not None:
        out["real"] = set_metrics(real_texts, real_vectors)
        out["similarity_to_real"] = round(similarity_to_real(real_vectors, vectors, TOP_K), 4)
    return out


def _classifier(path: Path) -> dict[str, Any] | None:
    """The headline of `localgen run`'s comparison, when the run folder has one."""
    if not path.is_file():
        return None
    comparison = json.loads(path.read_text())
    return {
        "test_rows": comparison["test"]["rows"],
        "settings": comparison.get("settings", {}),
        "results": {
            name: {k: entry.get(k) for k in ("title", "train_rows", "macro_f1", "accuracy")}
            | ({"skipped": entry["skipped"]} if "skipped" in entry else {})
            for name, entry in comparison["results"].items()
        },
        "differences": comparison["differences"],
        "synthetic_weight": comparison["results"].get("combined", {}).get("synthetic_weight"),
    }


LEAST_SHOWN = 5  # chosen documents shown per label, the least confident first


def _documents(path: Path) -> dict[str, Any] | None:
    """The labelled documents of `localgen run --documents`: per label, how many were
    answered and chosen and how confident, and the least confident chosen ones."""
    if not path.is_file():
        return None
    entry = json.loads(path.read_text()).get("documents")
    table = Path(entry["labels"]) / "labeled.parquet" if entry else None
    if table is None or not table.is_file():
        return None
    import polars as pl

    frame = pl.read_parquet(table, columns=["text", "label", "confidence", "chosen", "agree"])
    per_label = {}
    for (label,), own in frame.filter(pl.col("label").is_not_null()).group_by(
        "label", maintain_order=True
    ):
        chosen = own.filter(pl.col("chosen")).sort("confidence")
        per_label[str(label)] = {
            "answered": own.height,
            "agreed": int(own["agree"].sum() or 0),
            "chosen": chosen.height,
            "confidence_median": None
            if chosen.height == 0
            else round(float(chosen["confidence"].median()), 3),  # type: ignore[arg-type]
            "least": [
                {"text": t if len(t) <= 160 else t[:159] + "…", "confidence": round(c, 3)}
                for t, c in chosen.head(LEAST_SHOWN).select("text", "confidence").iter_rows()
            ],
        }
    return {"labels": entry["labels"], "documents": frame.height, "per_label": per_label}


def _curation(path: Path) -> dict[str, Any] | None:
    """Each rule's rates, when the run has been curated."""
    if not path.is_file():
        return None
    curation = json.loads(path.read_text())
    markup = [row for row in curation.get("rows", []) if row.get("dropped_by") == "markup"]
    return {
        "input": curation["counts"]["input"],
        "kept": curation["counts"]["kept"],
        # what the markup rule removed: the rows a reader checks first
        "markup": [
            {
                "label": row["label"],
                "text": row.get("text", ""),
                "why": row["findings"][0]["detail"],
            }
            for row in markup[:MARKUP_SHOWN]
        ],
        "rules": {
            rule: {k: entry.get(k) for k in ("enabled", "flagged", "flagged_rate", "dropped")}
            | ({"reason": entry["reason"]} if "reason" in entry else {})
            for rule, entry in curation["rules"].items()
        },
    }


def compute(
    run_dir: Path,
    real: LabeledData | None,
    encoder: TextEncoder,
    source: str = "auto",
    say: Say = silent,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, chart data) of a run."""
    folder = RunFolder(run_dir)
    rows, rows_file = folder.chosen_rows(source)
    if rows.height == 0:
        raise OutputError(f"{run_dir / rows_file} holds no rows")
    manifest = folder.read_manifest() or {}
    texts: list[str] = rows["text"].to_list()
    labels: list[str] = rows["label"].to_list()
    say(f"embedding {len(texts)} rows" + (f" and {real.frame.height} real" if real else ""))
    vectors = encode_cached(encoder, rows["id"].to_list(), texts, cache_file(run_dir, encoder), say)
    real_texts: list[str] = real.frame["text"].to_list() if real else []
    real_labels: list[str] = real.frame["label"].to_list() if real else []
    real_vectors = encoder.encode(real_texts) if real else None

    say("computing metrics")
    names = sorted(set(labels) | set(real_labels))
    per_label = {}
    for name in names:
        mine = [i for i, label in enumerate(labels) if label == name]
        theirs = [i for i, label in enumerate(real_labels) if label == name]
        per_label[name] = _block(
            [texts[i] for i in mine],
            vectors[mine],
            [real_texts[i] for i in theirs] if real else None,
            real_vectors[theirs] if real_vectors is not None else None,
        )
    metrics = {
        "format_version": FORMAT_VERSION,
        "created_at": utc_now(),
        "run": str(run_dir),
        "rows_file": rows_file,
        "model": (manifest.get("model") or {}).get("name"),
        "encoder": str(getattr(encoder, "path", "custom")),
        "real": None if real is None else {"path": real.source, "rows": real.frame.height},
        "strategies": dict(sorted(rows.group_by("strategy").len().iter_rows()))
        if "strategy" in rows.columns
        else {},
        "overall": _block(texts, vectors, real_texts or None, real_vectors),
        "per_label": per_label,
        "classifier": _classifier(run_dir / COMPARISON),
        "curation": _curation(run_dir / CURATION),
        "documents": _documents(run_dir / COMPARISON),
    }
    chart_data = {
        "names": names,
        "labels": labels,
        "texts": texts,
        "vectors": vectors,
        "real_labels": real_labels,
        "real_texts": real_texts,
        "real_vectors": real_vectors,
    }
    return metrics, chart_data


def _sample(n: int, limit: int) -> list[int]:
    return sorted(random.Random(0).sample(range(n), limit)) if n > limit else list(range(n))


def render(metrics: dict[str, Any], data: dict[str, Any]) -> str:
    """The report as one HTML string."""
    names = data["names"]
    synthetic_counts = [metrics["per_label"][n]["synthetic"]["rows"] for n in names]
    series: dict[str, list[float]] = {}
    if data["real_vectors"] is not None:
        series["real"] = [data["real_labels"].count(n) for n in names]
    series["synthetic"] = synthetic_counts
    lengths = {"synthetic": [len(words(t)) for t in data["texts"]]}
    if data["real_vectors"] is not None:
        lengths = {"real": [len(words(t)) for t in data["real_texts"]]} | lengths

    mine = _sample(len(data["texts"]), MAP_POINTS)
    theirs = _sample(len(data["real_texts"]), MAP_POINTS)
    parts = [data["vectors"][mine]]
    if data["real_vectors"] is not None:
        parts.append(data["real_vectors"][theirs])
    points = charts.pca_2d(np.concatenate(parts))
    index = {n: i for i, n in enumerate(names)}
    groups = [index[data["labels"][i]] for i in mine] + [
        index[data["real_labels"][i]] for i in theirs
    ]
    is_real = [False] * len(mine) + [True] * len(theirs)
    titles = [f"{data['labels'][i]} (synthetic): {data['texts'][i][:200]}" for i in mine] + [
        f"{data['real_labels'][i]} (real): {data['real_texts'][i][:200]}" for i in theirs
    ]
    env = Environment(
        loader=PackageLoader("localgen.report", "templates"),
        autoescape=select_autoescape(default=True),
        keep_trailing_newline=True,
    )
    template = env.get_template("report.html.jinja")
    return template.render(
        m=metrics,
        names=names,
        label_chart=charts.grouped_bars(names, series, "Rows per label"),
        length_chart=charts.histograms(lengths, "Length of the texts", "words"),
        map_chart=charts.scatter_map(
            points, groups, is_real, titles, names, "Embeddings, first two principal components"
        ),
        metric_rows=METRIC_ROWS,
    )


METRIC_ROWS = (
    ("rows", "rows", "{:d}"),
    ("words_mean", "words, mean", "{:.1f}"),
    ("distinct_1", "distinct-1 ↑", "{:.3f}"),
    ("distinct_2", "distinct-2 ↑", "{:.3f}"),
    ("self_bleu", "self-BLEU ↓", "{:.3f}"),
    ("remote_clique", "Remote Clique ↑", "{:.3f}"),
    ("chamfer", "Chamfer ↑", "{:.3f}"),
)


def write_report(
    config: ReportConfig, encoder: TextEncoder | None = None, say: Say = silent
) -> dict[str, Any]:
    """Compute the metrics, write metrics.json and report.html, return the metrics."""
    with writing(config.run_dir, "report", create=False):
        return _write_report(config, encoder, say)


def _write_report(config: ReportConfig, encoder: TextEncoder | None, say: Say) -> dict[str, Any]:
    run_dir = config.run_dir
    real = RunFolder(run_dir).real_data(config.real, config.text_column, config.label_column)
    with egress_guard() as audit:
        if encoder is None:
            from localgen.vectors.encoder import default_encoder

            encoder = default_encoder()
        metrics, data = compute(run_dir, real, encoder, config.source, say)
    metrics["egress"] = audit.as_dict()
    html = render(metrics, data)
    write_json(run_dir / METRICS, metrics)
    write_text(run_dir / REPORT, html)
    return metrics


def summary_lines(metrics: dict[str, Any]) -> str:
    """The headline numbers for a terminal, and where the report is."""
    overall = metrics["overall"]
    syn, real = overall["synthetic"], overall["real"]
    lines = [f"{syn['rows']} rows from {metrics['rows_file']}"]
    lines.append(f"{'':<16}{'synthetic':>10}{'real':>10}")
    for key, title, fmt in METRIC_ROWS[1:]:
        other = fmt.format(real[key]) if real else "-"
        lines.append(f"{title:<16}{fmt.format(syn[key]):>10}{other:>10}")
    if overall["similarity_to_real"] is not None:
        lines.append(
            f"similarity to real (top-{TOP_K} cosine): {overall['similarity_to_real']:.3f}"
        )
    lines.append(f"report: {Path(metrics['run']) / REPORT}")
    return "\n".join(lines)
