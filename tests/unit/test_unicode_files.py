"""Every file localgen writes keeps non-ASCII text, quotes and line breaks byte for byte,
and readable (no \\u escapes); every way in reads them back. Inputs in UTF-8 with a BOM and
CRLF, and UTF-16 with a BOM, read the same; UTF-16 without one and a pasted 10 MB file
are one clear line."""

import json
from pathlib import Path

import polars as pl
import pytest

from localgen.config import CurateConfig, EngineSettings, GenerateConfig, ReportConfig
from localgen.curation.curate import curate
from localgen.data import read_labeled, read_lines
from localgen.engines.fake import FakeEngine
from localgen.errors import DataError
from localgen.generation.generate import generate
from localgen.generation.store import export_rows
from localgen.models.resolve import ModelRef
from localgen.report.report import write_report
from tests.helpers import BagOfWords

TEXTS = [
    'Sehr geehrte Damen und Herren,\n\nder „Vertrag" § 3 kostet 49,90 € – bitte prüfen.\n\tDanke',
    "日本語のテキストです。請求書が二重に届きました。",
    'Back\\slash and "quotes" in the Agreement.\nSecond line',
]
LABEL = "Kündigung"
TASK = f"""
name = "unicode"
context = "Briefe an den Kundenservice."
language = "de"
[generation]
count = 3
[attributes]
ton = ["verärgert"]
[labels."{LABEL}"]
description = "Kündigungen."
"""


@pytest.fixture
def run(tmp_path: Path, write_task) -> Path:  # type: ignore[no-untyped-def]
    engine = FakeEngine()
    task = write_task(TASK)
    config = GenerateConfig(
        task_path=task,
        out=tmp_path / "run",
        quiet=True,
        engine=EngineSettings(name="fake"),
        formats=("parquet", "jsonl"),
        strategy=("attributes",),
    )
    for i, text in enumerate(TEXTS):
        raw = json.dumps({"text": text, "label": LABEL}, ensure_ascii=False, separators=(",", ":"))
        engine.enqueue(f"{LABEL}-{i:06d}", raw)
    generate(config, engine=engine, model=ModelRef("fake-model", Path("."), "cafe0000cafe0000"))
    return tmp_path / "run"


def test_run_files_keep_the_text_byte_for_byte(run: Path) -> None:
    assert sorted(pl.read_parquet(run / "synthetic.parquet")["text"]) == sorted(TEXTS)
    jsonl = run / "synthetic.jsonl"
    assert sorted(pl.read_ndjson(jsonl)["text"]) == sorted(TEXTS)
    written = jsonl.read_text(encoding="utf-8")
    assert "日本語" in written and LABEL in written and "\\u" not in written
    manifest = (run / "manifest.json").read_text(encoding="utf-8")
    assert LABEL in manifest and "verärgert" in manifest and "\\u00" not in manifest


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_exports_keep_the_text_byte_for_byte(run: Path, tmp_path: Path, suffix: str) -> None:
    out, n = export_rows(run, tmp_path / f"rows.{suffix}")
    assert n == len(TEXTS)
    frame = read_labeled(out).frame if suffix != "parquet" else pl.read_parquet(out)
    texts = frame["text"].to_list()
    # Read back as a user would: CSV and JSONL through localgen's own reader (which strips
    # the surrounding whitespace of a cell, as it does for every real file).
    assert sorted(texts) == sorted(t if suffix == "parquet" else t.strip() for t in TEXTS)


def test_curation_and_report_keep_the_text(run: Path) -> None:
    curate(CurateConfig(run_dir=run, min_words=1, on_topic_share=1.0), encoder=BagOfWords())
    assert sorted(pl.read_parquet(run / "curated.parquet")["text"]) == sorted(TEXTS)
    curation = (run / "curation.json").read_text(encoding="utf-8")
    assert LABEL in curation and "\\u00fc" not in curation
    write_report(ReportConfig(run_dir=run), encoder=BagOfWords())
    html = (run / "report.html").read_text(encoding="utf-8")
    assert LABEL in html and "日本語" in html


def test_utf8_bom_crlf_and_utf16_inputs_read_the_same(tmp_path: Path) -> None:
    content = 'text,label\r\n"Grüße, \r\nzweite Zeile",Kündigung\r\n"日本語です",Kündigung\r\n'
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + content.encode())
    (tmp_path / "utf16.csv").write_text(content, encoding="utf-16")  # with a BOM
    a, b = read_labeled(tmp_path / "bom.csv"), read_labeled(tmp_path / "utf16.csv")
    assert a.frame["text"].to_list() == b.frame["text"].to_list()
    assert a.frame["text"][1] == "日本語です" and a.frame["label"][0] == "Kündigung"
    (tmp_path / "lines.txt").write_text("Grüße\nzwei\n", encoding="utf-16")
    assert read_lines(tmp_path / "lines.txt")[:2] == ["Grüße", "zwei"]


def test_utf16_without_a_bom_and_huge_texts_are_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "le.csv").write_bytes("text,label\nabc,d\n".encode("utf-16-le"))
    with pytest.raises(DataError, match="UTF-16 without a byte-order mark") as e:
        read_labeled(tmp_path / "le.csv")
    assert "\n" not in str(e.value)
    (tmp_path / "big.csv").write_text('text,label\n"' + "wort " * 2_100_000 + '",a\nok text,b\n')
    with pytest.raises(DataError, match="row 1 has a text of 10,499,999 characters"):
        read_labeled(tmp_path / "big.csv")
