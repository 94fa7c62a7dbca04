"""The report: metrics per label against direct computation, a self-contained HTML file
that escapes the rows' text, and a render in headless Chromium when it is installed."""

from __future__ import annotations

import json
import random
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from localgen.cli import cli
from localgen.config import CurateConfig, ReportConfig
from localgen.curation.curate import curate
from localgen.report import metrics
from localgen.report.charts import pca_2d
from localgen.report.report import METRICS, REPORT, write_report
from tests.helpers import EXAMPLE_SEED, EXAMPLE_TASK, REAL, BagOfWords, make_run, write_csv

ROWS = [
    {"text": "Please refund the double charge on my invoice", "label": "billing"},
    {"text": "Please refund the double charge on my invoice", "label": "billing"},
    {"text": "My card was billed twice for one plan", "label": "billing"},
    {"text": "<script>alert('x')</script> I cannot log in & my code fails", "label": "access"},
    {"text": "The password reset link does not arrive", "label": "access"},
]


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return make_run(tmp_path, ROWS)


def _external_references(html: str) -> list[str]:
    """Anything a browser would fetch: src/href attributes, CSS url() and @import."""
    found = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", html)
    found += re.findall(r"url\(([^)]*)\)", html) + re.findall(r"@import[^;]*", html)
    return found


def test_metrics_per_label_match_direct_computation(run: Path, tmp_path: Path) -> None:
    real = write_csv(tmp_path / "real.csv", REAL)
    encoder = BagOfWords()
    m = write_report(ReportConfig(run, real), encoder)
    assert json.loads((run / METRICS).read_text()) == m
    billing = [r["text"] for r in ROWS if r["label"] == "billing"]
    real_billing = [t for t, lab in REAL if lab == "billing"]
    got = m["per_label"]["billing"]
    assert got["synthetic"]["rows"] == 3 and got["real"]["rows"] == 3
    assert got["synthetic"]["distinct_1"] == round(metrics.distinct_n(billing, 1), 4)
    assert got["synthetic"]["self_bleu"] == round(metrics.self_bleu(billing), 4)
    vectors = encoder.encode(billing)
    third = 1.0 - float(vectors[2] @ vectors[0])  # the two identical rows are at distance 0
    assert got["synthetic"]["chamfer"] == round(third / 3, 4)
    assert got["synthetic"]["chamfer"] == round(metrics.chamfer(vectors), 4)
    expected = metrics.similarity_to_real(encoder.encode(real_billing), encoder.encode(billing))
    assert got["similarity_to_real"] == round(expected, 4)
    assert m["overall"]["synthetic"]["rows"] == len(ROWS)
    assert m["rows_file"] == "synthetic.parquet" and m["curation"] is None


def test_report_uses_curated_rows_and_shows_curation(run: Path, tmp_path: Path) -> None:
    real = write_csv(tmp_path / "real.csv", REAL)
    curate(CurateConfig(run, real=real), BagOfWords())
    m = write_report(ReportConfig(run, real), BagOfWords())
    assert m["rows_file"] == "curated.parquet"
    # one exact duplicate; the <script> tag is markup no real row has
    assert m["overall"]["synthetic"]["rows"] == m["curation"]["kept"] == 3
    assert m["curation"]["rules"]["exact-duplicate"]["dropped"] == 1
    assert m["curation"]["rules"]["markup"]["dropped"] == 1
    html = (run / REPORT).read_text()
    assert "exact-duplicate" in html and "markup" in html and "3 of 5 rows kept" in html
    assert m["curation"]["markup"] == [
        {"label": "access", "text": ROWS[3]["text"], "why": m["curation"]["markup"][0]["why"]}
    ]
    assert "a tag" in m["curation"]["markup"][0]["why"]
    assert "What the markup rule removed" in html and "&lt;script&gt;alert" in html
    raw = write_report(ReportConfig(run, real, source="raw"), BagOfWords())
    assert raw["overall"]["synthetic"]["rows"] == 5


def test_html_is_self_contained_and_escapes_text(run: Path) -> None:
    write_report(ReportConfig(run), BagOfWords())
    html = (run / REPORT).read_text()
    assert _external_references(html) == []
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert" in html  # the row's text, shown as text
    assert html.count("<svg") == 3  # labels, lengths, map
    assert html.count("<circle") >= len(ROWS)  # one point per row on the map


def test_pca_map_is_deterministic_and_keeps_the_main_direction() -> None:
    rng = np.random.default_rng(0)
    t = rng.normal(size=50)
    x = np.stack([t, 2 * t, 0.01 * rng.normal(size=50)], axis=1)
    p = pca_2d(x)
    assert p.shape == (50, 2)
    assert abs(np.corrcoef(p[:, 0], t)[0, 1]) > 0.999
    assert np.allclose(pca_2d(x), p)
    # The signs are fixed by the data's direction: the mirrored data gives the mirrored map.
    assert np.allclose(pca_2d(-x), -p)
    assert np.allclose(np.abs(pca_2d(-x)), np.abs(p))


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
def test_report_renders_in_headless_chromium(run: Path, tmp_path: Path) -> None:
    write_report(ReportConfig(run, write_csv(tmp_path / "real.csv", REAL)), BagOfWords())
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    shots = {}
    for name, page in (("report", run / REPORT), ("blank", blank)):
        shot = tmp_path / f"{name}.png"
        subprocess.run(
            [
                str(CHROMIUM),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--window-size=1000,2400",
                f"--screenshot={shot}",
                page.as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=True,
        )
        assert _png_size(shot) == (1000, 2400)
        shots[name] = shot.stat().st_size
    # A page of charts and tables compresses far worse than an empty one.
    assert shots["report"] > 10 * shots["blank"]


def test_curate_and_report_commands_on_a_generated_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    runner = CliRunner()
    seed_args = ["--seed-data", str(EXAMPLE_SEED), "--text-column", "message"]
    seed_args += ["--label-column", "team"]
    result = runner.invoke(
        cli,
        ["generate", str(EXAMPLE_TASK), "--out", str(out), "-n", "6", "--engine", "fake", "-q"]
        + seed_args,
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["curate", str(out), "-q"])
    assert result.exit_code == 0, result.output
    curation = json.loads((out / "curation.json").read_text())
    # The run's seed data is the real data by default, with its own column names.
    assert curation["inputs"]["real"]["path"] == str(EXAMPLE_SEED)
    assert f"{curation['counts']['kept']} of {curation['counts']['input']} rows kept" in (
        result.stdout
    )
    for rule in ("length", "exact-duplicate", "leakage", "near-duplicate", "label-fidelity"):
        assert curation["rules"][rule]["enabled"], rule
    result = runner.invoke(cli, ["report", str(out), "-q"])
    assert result.exit_code == 0, result.output
    m = json.loads((out / METRICS).read_text())
    assert m["overall"]["synthetic"]["rows"] == curation["counts"]["kept"]
    assert m["overall"]["real"]["rows"] == 24
    assert 0.0 < m["overall"]["similarity_to_real"] <= 1.0
    assert f"report: {out / REPORT}" in result.stdout


def test_remote_clique_and_chamfer_use_a_fixed_sample_above_a_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from localgen.report import report

    texts = [f"row {i} about {'billing' if i % 2 else 'bugs'} number {i * 7}" for i in range(40)]
    vectors = BagOfWords().encode(texts)
    whole = report.set_metrics(texts, vectors)
    assert whole["sampled"] == {"self_bleu": 40, "remote_clique_chamfer": 40}
    monkeypatch.setattr(report, "VECTOR_SAMPLE", 10)
    sampled = report.set_metrics(texts, vectors)
    assert sampled["sampled"]["remote_clique_chamfer"] == 10
    assert sampled == report.set_metrics(texts, vectors)  # a fixed sample
    chosen = sorted(random.Random(0).sample(range(40), 10))
    assert sampled["chamfer"] == round(metrics.chamfer(vectors[chosen]), 4)
