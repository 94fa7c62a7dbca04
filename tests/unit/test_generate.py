"""The generation pipeline around the engine, with the fake engine (fast)."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest

from localgen.config import EngineSettings, GenerateConfig
from localgen.engines.fake import FakeEngine
from localgen.errors import DataError, OutputError, TaskError
from localgen.generation.generate import generate
from localgen.generation.rows import OUTPUT_SCHEMA
from localgen.locks import LOCK_FILE
from localgen.models.resolve import ModelRef

FAKE_MODEL = ModelRef("fake-model", Path("/models/fake"), "cafe0000cafe0000")


def _config(task: Path, out: Path, **kw) -> GenerateConfig:  # type: ignore[no-untyped-def]
    return GenerateConfig(
        task_path=task, out=out, quiet=True, engine=EngineSettings(name="fake"), **kw
    )


def _run(config: GenerateConfig, engine: FakeEngine | None = None):  # type: ignore[no-untyped-def]
    return generate(config, engine=engine or FakeEngine(), model=FAKE_MODEL)


def test_rows_carry_label_and_full_provenance(task_file: Path, tmp_path: Path) -> None:
    result = _run(_config(task_file, tmp_path / "run", seed=3))
    rows = pl.read_parquet(tmp_path / "run" / "synthetic.parquet")
    assert rows.height == result.written == 6
    assert rows.columns == list(OUTPUT_SCHEMA)
    assert rows.group_by("label").len().sort("label").rows() == [("billing", 3), ("bug", 3)]
    for row in rows.iter_rows(named=True):
        assert row["request_key"].startswith(row["label"] + "-")
        assert row["model"] == "fake-model" and row["model_config_hash"] == "cafe0000cafe0000"
        assert row["engine"] == "fake" and row["strategy"] == "zero-shot"
        assert len(row["template_hash"]) == 12 and row["attempt"] == 0
        assert row["max_tokens"] > 84 and row["finish_reason"] == "stop"
        assert row["id"].startswith("syn-") and row["created_at"].endswith("+00:00")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["counts"]["per_label"] == {"billing": 3, "bug": 3}
    assert manifest["egress"]["blocked_attempts"] == 0
    assert manifest["task"]["name"] == "tiny"


def test_same_seed_gives_same_rows(task_file: Path, tmp_path: Path) -> None:
    _run(_config(task_file, tmp_path / "a", seed=5))
    _run(_config(task_file, tmp_path / "b", seed=5))
    _run(_config(task_file, tmp_path / "c", seed=6))
    read = lambda d: pl.read_parquet(tmp_path / d / "synthetic.parquet")["text"].to_list()  # noqa: E731
    assert read("a") == read("b")
    assert read("a") != read("c")


def test_invalid_output_is_retried_with_a_new_seed(task_file: Path, tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.enqueue("bug-000001", '{"text":"truncated')  # first attempt only
    _run(_config(task_file, tmp_path / "run"), engine)
    # Put back into the same feed: the engine takes it as its batch runs, not after it.
    assert engine.calls[0].count("bug-000001") == 2 and engine.calls[0][-1] == "bug-000001"
    rows = pl.read_parquet(tmp_path / "run" / "synthetic.parquet")
    retried = rows.filter(pl.col("request_key") == "bug-000001").row(0, named=True)
    assert retried["attempt"] == 1
    first = rows.filter(pl.col("request_key") == "bug-000000").row(0, named=True)
    assert retried["seed"] != first["seed"]


def test_persistent_failure_is_recorded_never_relabelled(task_file: Path, tmp_path: Path) -> None:
    engine = FakeEngine()
    for _ in range(3):  # the first try and both retries say the wrong label
        engine.enqueue("billing-000002", '{"text":"Please fix the login page","label":"bug"}')
    result = _run(_config(task_file, tmp_path / "run"), engine)
    assert result.written == 5
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "complete_with_failures"
    [failure] = manifest["failures"]
    assert failure["key"] == "billing-000002" and failure["attempts"] == 3
    assert "is not one of ['billing']" in failure["reason"]
    rows = pl.read_parquet(tmp_path / "run" / "synthetic.parquet")
    assert "billing-000002" not in rows["request_key"].to_list()


class _Crash(Exception):
    pass


class _CrashingEngine(FakeEngine):
    """Dies after a number of completions, like a run killed halfway."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def generate(self, requests):  # type: ignore[no-untyped-def]
        for i, completion in enumerate(super().generate(requests)):
            if i == self.after:
                raise _Crash
            yield completion


def test_resume_generates_only_what_is_missing(task_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(_Crash):  # a shard every two rows
        _run(_config(task_file, out, seed=9, shard_rows=2), _CrashingEngine(after=5))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert not (out / "synthetic.parquet").exists()
    # Two full shards, and the fifth row, received before the crash, in a third.
    assert len(list((out / "shards").glob("part-*.parquet"))) == 3
    engine = FakeEngine()
    result = _run(_config(task_file, out, seed=9), engine)
    assert result.resumed == 5 and len(engine.calls[0]) == 1
    _run(_config(task_file, tmp_path / "clean", seed=9))
    stale = out / "shards" / ".part-00009.parquet.x1y2.tmp"  # what a kill mid-write leaves
    stale.write_bytes(b"PAR1 half a shard")
    _run(_config(task_file, out, seed=9))  # nothing left to generate
    assert not stale.exists()
    resumed = pl.read_parquet(out / "synthetic.parquet").drop("created_at")
    clean = pl.read_parquet(tmp_path / "clean" / "synthetic.parquet").drop("created_at")
    assert resumed.equals(clean)


def test_output_folder_errors(task_file: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        _run(_config(task_file, a_file))
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="holds no localgen run"):
        _run(_config(task_file, other))
    _run(_config(task_file, tmp_path / "run", seed=1))
    with pytest.raises(OutputError, match="holds a different run"):
        _run(_config(task_file, tmp_path / "run", seed=2))
    _run(_config(task_file, tmp_path / "run", seed=2, overwrite=True))


def test_a_run_killed_before_its_first_manifest_starts_afresh(
    task_file: Path, tmp_path: Path
) -> None:
    # What a run killed while its engine loads leaves: the writer lock, an empty shard
    # folder, perhaps the manifest's temporary file; no manifest and no rows.
    out = tmp_path / "run"
    (out / "shards").mkdir(parents=True)
    (out / LOCK_FILE).touch()
    (out / ".manifest.json.k1ll.tmp").write_text('{"status": "runn')
    _run(_config(task_file, out, seed=3))
    _run(_config(task_file, tmp_path / "clean", seed=3))
    resumed = pl.read_parquet(out / "synthetic.parquet").drop("created_at")
    clean = pl.read_parquet(tmp_path / "clean" / "synthetic.parquet").drop("created_at")
    assert resumed.equals(clean)
    assert not list(out.glob(".*.tmp"))
    other = tmp_path / "other"  # a shard folder holding anything is not a killed start
    (other / "shards").mkdir(parents=True)
    (other / "shards" / "mine.txt").write_text("mine")
    with pytest.raises(OutputError, match="holds no localgen run"):
        _run(_config(task_file, other))
    assert (other / "shards" / "mine.txt").read_text() == "mine"


def test_bad_input_writes_nothing(tmp_path: Path, write_task, seed_csv: Path) -> None:  # type: ignore[no-untyped-def]
    bad = write_task("name = 'x'\n")
    with pytest.raises(TaskError):
        _run(_config(bad, tmp_path / "run1"))
    assert not (tmp_path / "run1").exists()
    only_billing = write_task("name='x'\ncontext='y'\n[labels.billing]\ndescription='z'\n")
    with pytest.raises(DataError, match="labels not in the task file: 'bug'"):
        _run(
            _config(
                only_billing,
                tmp_path / "run2",
                seed_data=seed_csv,
                text_column="body",
                label_column="cls",
            )
        )
    assert not (tmp_path / "run2").exists()


def test_the_check_records_each_rows_fit_margin_where_the_engine_scores_texts(
    task_file: Path, tmp_path: Path
) -> None:
    """With --fit-margin every row gets its fit margin and posterior from the engine's
    scores of its text under each label's prompt (`ChannelFit`); an engine that cannot
    score, or a run that does not ask, leaves them null and still checks the labels."""
    from localgen.planning.channel import ChannelFit
    from localgen.planning.task import load_task

    engine = FakeEngine()
    engine.enqueue("billing-000001", '{"text":"Invoices and refunds, money","label":"billing"}')
    engine.enqueue("bug-000001", '{"text":"Invoices and refunds, money","label":"bug"}')
    _run(_config(task_file, tmp_path / "run", seed=3, fit_margin=True), engine)
    rows = pl.read_parquet(tmp_path / "run" / "synthetic.parquet")
    assert rows["fit_margin"].null_count() == 0 and rows["check_label"].null_count() == 0
    margin = dict(rows.select("request_key", "fit_margin").iter_rows())
    # "invoices" and "and" are in billing's line, nothing in bug's: 4 words, 2 shared
    assert margin["billing-000001"] == 4.0 and margin["bug-000001"] == -4.0
    channel = ChannelFit(load_task(task_file))
    pairs = list(zip(rows["text"], rows["label"], strict=True))
    expected = list(channel.score(FakeEngine(), pairs))
    assert rows["fit_margin"].to_list() == [f.margin for f in expected]
    assert rows["fit_posterior"].to_list() == [f.posterior for f in expected]
    assert ((rows["fit_posterior"] > 0) & (rows["fit_posterior"] <= 1)).all()

    class NoScores(FakeEngine):
        def __getattribute__(self, name: str) -> Any:
            if name == "likelihoods":
                raise AttributeError(name)
            return super().__getattribute__(name)

    _run(_config(task_file, tmp_path / "plain", seed=3, fit_margin=True), NoScores())
    plain = pl.read_parquet(tmp_path / "plain" / "synthetic.parquet")
    assert plain["fit_margin"].null_count() == plain.height
    assert plain["check_label"].null_count() == 0
    # Not asked for (the default): the check alone, no scores.
    _run(_config(task_file, tmp_path / "default", seed=3), FakeEngine())
    default = pl.read_parquet(tmp_path / "default" / "synthetic.parquet")
    assert default["fit_margin"].null_count() == default.height
    assert default["check_label"].null_count() == 0


def test_rows_checked_without_fit_scores_get_them_when_asked_and_old_shards_still_join(
    task_file: Path, tmp_path: Path
) -> None:
    """A folder whose rows were checked before fit scores existed (check shards without
    the columns): a rerun still writes its table, and one with --fit-margin checks and
    scores those rows again, the later answer kept."""
    out = tmp_path / "run"
    _run(_config(task_file, out, seed=3))
    for shard in sorted((out / "checks").glob("part-*.parquet")):  # as an older localgen wrote
        pl.read_parquet(shard).select("request_key", "check_label").write_parquet(shard)
    again = FakeEngine()
    _run(_config(task_file, out, seed=3), again)
    assert again.calls == []  # nothing left to do without fit scores
    rows = pl.read_parquet(out / "synthetic.parquet")
    assert rows["check_label"].null_count() == 0 and rows["fit_margin"].null_count() == 6
    scored = FakeEngine()
    _run(_config(task_file, out, seed=3, fit_margin=True), scored)
    assert len(scored.calls) == 1 and len(scored.calls[0]) == 6  # the six checks again
    rows = pl.read_parquet(out / "synthetic.parquet")
    assert rows.height == 6 and rows["fit_posterior"].null_count() == 0
    assert rows["check_label"].null_count() == 0
    done = FakeEngine()
    _run(_config(task_file, out, seed=3, fit_margin=True), done)
    assert done.calls == []


def test_jsonl_output_matches_parquet(task_file: Path, tmp_path: Path) -> None:
    _run(_config(task_file, tmp_path / "run", formats=("parquet", "jsonl")))
    parquet = pl.read_parquet(tmp_path / "run" / "synthetic.parquet")
    jsonl = pl.read_ndjson(tmp_path / "run" / "synthetic.jsonl")
    assert jsonl["text"].to_list() == parquet["text"].to_list()
    assert jsonl["positive_ids"].to_list() == parquet["positive_ids"].to_list()


def test_the_label_check_asks_the_model_about_every_row_once(
    task_file: Path, tmp_path: Path
) -> None:
    engine = FakeEngine()
    engine.enqueue("billing-000001/check", '{"label":"bug"}')  # the model disagrees
    engine.enqueue("bug-000002/check", "not an answer")
    _run(_config(task_file, tmp_path / "run", seed=3), engine)
    rows = pl.read_parquet(tmp_path / "run" / "synthetic.parquet")
    answers = dict(rows.select("request_key", "check_label").iter_rows())
    assert answers["billing-000001"] == "bug" and answers["bug-000002"] is None
    assert sum(a == key.split("-")[0] for key, a in answers.items()) == 4
    assert rows["mean_logprob"].null_count() == 0 and (rows["mean_logprob"] < 0).all()
    [checks] = [c for c in engine.calls if c[0].endswith("/check")]
    assert sorted(checks) == sorted(f"{key}/check" for key in answers)
    prompt_of = {r.key: r.prompt for r in engine.last_requests}
    checked = prompt_of["billing-000001/check"]
    text = rows.filter(pl.col("request_key") == "billing-000001")["text"].item()
    # The question, then the row last: the prefix cache serves all but the row.
    assert checked.endswith(text) and "Which category does the text below belong to?" in checked
    other = prompt_of["bug-000002/check"]
    shared = checked[: checked.index(text)]
    assert other.startswith(shared) and shared.count("Which category") == 1
    # Rerun: every row is stored and checked, so the engine is not even asked.
    again = FakeEngine()
    _run(_config(task_file, tmp_path / "run", seed=3), again)
    assert again.calls == []
    # Switched off: no check requests, an empty column.
    off = FakeEngine()
    _run(_config(task_file, tmp_path / "off", seed=3, check_labels=False), off)
    assert len(off.calls) == 1
    assert pl.read_parquet(tmp_path / "off" / "synthetic.parquet")["check_label"].null_count() == 6


def test_the_window_bounds_the_requests_in_flight_and_changes_no_row(
    task_file: Path, tmp_path: Path
) -> None:
    engine = FakeEngine()
    engine.enqueue("bug-000001", '{"text":"truncated')  # put back while the feed runs
    _run(_config(task_file, tmp_path / "small", count=7, window=3), engine)
    [rows, checks] = engine.calls  # one feed per pass: the rows, then the label check
    assert engine.most_held == 3  # never more in flight than the window
    assert len(rows) == 15 and rows.count("bug-000001") == 2  # 14 + 1 retry
    assert len(checks) == 14
    columns = ["request_key", "id", "text", "label", "seed", "attempt"]
    one = FakeEngine()
    one.enqueue("bug-000001", '{"text":"truncated')
    _run(_config(task_file, tmp_path / "whole", count=7), one)
    read = lambda d: pl.read_parquet(tmp_path / d / "synthetic.parquet").select(columns)  # noqa: E731
    assert read("small").equals(read("whole"))


def test_the_output_table_is_written_a_bucket_at_a_time_in_key_order(
    task_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("localgen.generation.store.SORTED_AT_ONCE", 4)
    monkeypatch.setattr("localgen.generation.store.ROW_GROUP_ROWS", 7)
    engine = FakeEngine()
    engine.enqueue("billing-000002", '{"text":"truncated')  # stored late: a retry
    _run(_config(task_file, tmp_path / "run", count=10, shard_rows=3), engine)
    table = tmp_path / "run" / "synthetic.parquet"
    rows = pl.read_parquet(table)
    assert rows["request_key"].to_list() == [
        f"{label}-{i:06d}" for label in ("billing", "bug") for i in range(10)
    ]
    assert rows.columns == list(OUTPUT_SCHEMA) and rows["check_label"].null_count() == 0
    # buckets of 4, 4 and 2 rows per label, gathered until a row group has 7 or more
    meta = pq.ParquetFile(table).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [8, 10, 2]
    group = meta.row_group(0)
    stats = {
        group.column(i).path_in_schema: group.column(i).statistics for i in range(group.num_columns)
    }
    assert stats["text"] is None and stats["attributes"] is None  # free text: no min/max
    assert stats["label"].min == stats["label"].max == "billing"


def test_the_output_table_is_written_with_the_system_allocator(
    task_file: Path, tmp_path: Path
) -> None:
    # Arrow reads its allocator's name once, when pyarrow is first imported: a fresh
    # process shows whether localgen chose it before anything imported pyarrow.
    script = (
        "import sys\n"
        "from localgen.cli import cli\n"
        "try:\n"
        "    cli.main(sys.argv[1:])\n"
        "finally:\n"
        "    import pyarrow as pa\n"
        "    print(pa.default_memory_pool().backend_name)\n"
    )
    args = [str(task_file), "--out", str(tmp_path / "run"), "-n", "2", "--engine", "fake"]
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    done = subprocess.run(
        [sys.executable, "-c", script, "generate", *args, "--quiet"],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    assert done.stdout.split()[-1] == "system", done.stdout
    assert (tmp_path / "run" / "synthetic.parquet").exists()


def test_stored_keys_are_held_as_numbers_and_answer_like_a_set() -> None:
    import polars as pl

    from localgen.generation.store import KeySet

    stored = [f"billing-{n:06d}" for n in (0, 7, 123456)] + ["bill-ing-000002"]
    stored += ["a/b-000003/summary", "billing-1234567", "odd key", "billing-07"]
    keys = KeySet(pl.Series(stored + stored[:2]))
    assert len(keys) == len(stored)
    for key in stored:
        assert key in keys
    absent = ["billing-000001", "billing-000007/summary", "bill-ing-000003", "billing-7"]
    absent += ["a/b-000003", "billing-0000007", "billing-1234568", "other-000000", "odd"]
    for key in absent:
        assert key not in keys, key
    assert (
        "x" not in KeySet(pl.Series([], dtype=pl.Utf8))
        and len(KeySet(pl.Series([], dtype=pl.Utf8))) == 0
    )
