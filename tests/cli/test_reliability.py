"""Runs that are killed, interrupted or starved of disk lose nothing and resume exactly.

The kill tests run the real command line in a child process (`--engine fake` slowed to a
fixed token rate, so there is time to kill it mid-run) and compare the finished table
with an uninterrupted run of the same command. The real-engine case is in
tests/integration/test_vllm.py.
"""

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from localgen.cli import cli
from tests.helpers import EXAMPLE_TASK, ROOT

LOCALGEN = [sys.executable, "-m", "localgen"]
# Two passes (attributes + hierarchical summaries, then the texts), 40 rows, shards of 3.
ARGS = ["generate", str(EXAMPLE_TASK), "-n", "10", "--engine", "fake", "--quiet"]
ARGS += ["--strategy", "attributes", "--strategy", "hierarchical", "--shard-rows", "3"]
ENV = {**os.environ, "LOCALGEN_FAKE_TOKENS_PER_S": "150"}  # ~80 ms a row: ~5 s a run
COMPARED = ["request_key", "id", "text", "label", "attributes", "intermediate", "seed"]
COMPARED += ["check_label"]  # the label check's answers, joined in at the end


def _start(out: Path, tokens_per_s: int = 150, extra: Sequence[str] = ()) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*LOCALGEN, *ARGS, *extra, "--out", str(out)],
        cwd=ROOT,
        env={**ENV, "LOCALGEN_FAKE_TOKENS_PER_S": str(tokens_per_s)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _table(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "synthetic.parquet").select(COMPARED).sort("request_key")


def _wait_for_shards(out: Path, at_least: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list((out / "shards").glob("part-*.parquet"))) >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {at_least} shards in {out} after {timeout} s")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    out = tmp_path_factory.mktemp("whole") / "run"
    child = _start(out)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    return _table(out)


# Where the kill test stops each run: a stage the run has reached, read from its folder
# (rows in shards/, hierarchical summaries in drafts/, label-check answers in checks/), never
# a sleep, so each kill lands in the same stage however busy the machine is. The first pass
# writes the 20 attributes rows and the 20 summaries, the second the 20 hierarchical rows,
# then each of the 40 rows gets its label check. Each kill: (the stage, the records to wait
# for, the folder the stage fills, which must not be full when killed, and the fake
# engine's tokens/s for that run: the last is slower, so that its label check, a third of
# a second at 150, lasts over a second).
KILLS = [
    ("first pass", {"shards": 6, "drafts": 3}, "drafts", 150),
    ("second pass", {"drafts": 20, "shards": 34}, "shards", 150),
    ("label check", {"shards": 40, "checks": 9}, "checks", 50),
]
KEYS = {"shards": "request_key", "drafts": "key", "checks": "request_key"}
TOTALS = {"shards": 40, "drafts": 20, "checks": 40}  # records of the finished run


def _records(out: Path, cache: dict[Path, int]) -> dict[str, int]:
    """Records stored in each shard folder; each shard is read once (shards are whole)."""
    counts = {}
    for folder in KEYS:
        counts[folder] = 0
        for shard in (out / folder).glob("part-*.parquet"):
            if shard not in cache:
                cache[shard] = pl.scan_parquet(shard).select(pl.len()).collect().item()
            counts[folder] += cache[shard]
    return counts


def _kill_at(child: subprocess.Popen[str], out: Path, wanted: dict[str, int]) -> None:
    """SIGKILL the run as soon as its folder holds the `wanted` records (or more)."""
    cache: dict[Path, int] = {}
    deadline = time.monotonic() + 60
    while any(_records(out, cache)[folder] < n for folder, n in wanted.items()):
        if child.poll() is not None:
            _, err = child.communicate()
            raise AssertionError(f"the run ended (exit {child.returncode}) before {wanted}: {err}")
        assert time.monotonic() < deadline, f"no {wanted} in {out} after 60 s"
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL  # killed mid-run, not finished by then


def _stored(out: Path) -> dict[str, list[str]]:
    """The keys of every record a run folder holds, by folder, reading every shard whole
    (a torn shard raises)."""
    return {
        folder: [
            key
            for shard in sorted((out / folder).glob("part-*.parquet"))
            for key in pl.read_parquet(shard)[column].to_list()
        ]
        for folder, column in KEYS.items()
    }


def test_sigkill_at_each_stage_then_resume_gives_the_same_rows(
    tmp_path: Path, uninterrupted: pl.DataFrame
) -> None:
    """Killed in the first pass, the second pass and the label check, each run resumes
    from exactly what the one before stored: nothing stored is lost or asked again (no key
    twice), and the finished table is the uninterrupted run's."""
    out = tmp_path / "run"
    before: dict[str, set[str]] = {folder: set() for folder in KEYS}

    def stored_since(stage: str) -> dict[str, list[str]]:
        stored = _stored(out)
        for folder, keys in stored.items():
            assert len(keys) == len(set(keys)), f"{stage}: a record stored twice in {folder}/"
            assert before[folder] <= set(keys), f"{stage}: a stored record of {folder}/ was lost"
        return stored

    for stage, wanted, filling, tokens_per_s in KILLS:
        _kill_at(_start(out, tokens_per_s), out, wanted)
        stored = stored_since(stage)
        assert len(stored[filling]) < TOTALS[filling], f"{stage}: killed after the stage"
        assert not stored["checks"] or len(stored["shards"]) == 40, stage  # checks come last
        assert not (out / "synthetic.parquet").exists(), stage  # no table from a killed run
        before = {folder: set(keys) for folder, keys in stored.items()}
    child = _start(out, extra=["--json"])
    stdout, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    summary = json.loads(stdout)
    assert summary["resumed"] == 40 and summary["written"] == 40 and summary["failed"] == 0
    # Every row, summary and label check was asked once over the four runs.
    assert {folder: len(keys) for folder, keys in stored_since("end").items()} == TOTALS
    resumed = _table(out)
    assert resumed.height == 40 and resumed["request_key"].n_unique() == 40
    assert resumed.equals(uninterrupted)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["counts"]["stored"] == 40
    assert not list(out.rglob("*.tmp"))  # a write cut by a kill leaves one; resuming clears it


def test_ctrl_c_exits_130_with_one_line_and_resumes(
    tmp_path: Path, uninterrupted: pl.DataFrame
) -> None:
    out = tmp_path / "run"
    child = _start(out)
    _wait_for_shards(out, 2)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 130
    assert err.strip().splitlines() == [
        "interrupted; rows already written are kept: rerun the same command to resume"
    ]
    manifest = json.loads((out / "manifest.json").read_text())
    stored = pl.scan_parquet(out / "shards").select(pl.len()).collect().item()
    assert manifest["status"] == "interrupted" and manifest["counts"]["stored"] == stored >= 2
    child = _start(out)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert _table(out).equals(uninterrupted)


def test_full_disk_is_one_line_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(self: pl.DataFrame, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pl.DataFrame, "write_parquet", no_space)
    out = tmp_path / "run"
    args = ["generate", str(EXAMPLE_TASK), "-n", "2", "--engine", "fake", "-q", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: cannot write {out / 'shards' / 'part-00000.parquet'}: No space left on device"
    ]
    assert not out.exists()  # nothing was stored, so nothing is left behind


def test_a_dependency_dialling_out_is_refused_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from localgen.engines.fake import FakeEngine

    real_generate = FakeEngine.generate

    def phones_home(self, requests):  # type: ignore[no-untyped-def]
        with contextlib.suppress(OSError):  # telemetry that swallows its own failure
            socket.create_connection(("203.0.113.9", 443), timeout=5)
        yield from real_generate(self, requests)

    monkeypatch.setattr(FakeEngine, "generate", phones_home)
    out = tmp_path / "run"
    args = ["generate", str(EXAMPLE_TASK), "-n", "1", "--engine", "fake", "-q", "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--no-check-labels"])  # one engine call
    assert result.exit_code == 0, result.output
    egress = json.loads((out / "manifest.json").read_text())["egress"]
    assert egress["blocked_attempts"] == 1 and egress["blocked"][0].startswith("203.0.113.9:443")

    def insists(self, requests):  # type: ignore[no-untyped-def]
        socket.create_connection(("198.51.100.7", 80), timeout=5)  # gives up with an error
        yield from real_generate(self, requests)

    monkeypatch.setattr(FakeEngine, "generate", insists)
    result = CliRunner().invoke(cli, [*args[:-1], str(tmp_path / "other")])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "Error: localgen is offline: refused network access to 198.51.100.7:80 (lookup)"
    ]
    assert not (tmp_path / "other").exists()


def test_a_second_writer_is_refused_and_the_first_finishes_whole(tmp_path: Path) -> None:
    """Two `generate` commands with the same arguments and --out, a moment apart (a cron
    retry, two colleagues): the second gets one line naming the first and writes nothing;
    `curate` is refused the same way; `show` reads the folder meanwhile; the first ends
    with every planned row once."""
    out = tmp_path / "run"
    command = [*LOCALGEN, "generate", str(EXAMPLE_TASK), "-n", "20", "--engine", "fake"]
    command += ["--strategy", "zero-shot", "--shard-rows", "5", "--quiet", "--out", str(out)]
    first = subprocess.Popen(
        command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for_shards(out, 1)

    def other(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*LOCALGEN, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60
        )

    second = other(*command[3:])
    shards_then = len(list((out / "shards").glob("part-*.parquet")))
    curating = other("curate", str(out))
    showing = other("show", str(out))
    assert first.poll() is None, "the first writer ended before the others were tried"
    for refused, name in ((second, "generate"), (curating, "curate")):
        assert refused.returncode == 1, refused.stderr
        [line] = refused.stderr.strip().splitlines()
        assert line.startswith(f"Error: {out} is being written by localgen generate (pid ")
        assert f"pid {first.pid} on " in line and "choose another --out" in line, name
    assert showing.returncode == 0, showing.stderr
    assert " rows so far (status: running; the run is not finished): " in showing.stdout
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    rows = pl.read_parquet(out / "synthetic.parquet")
    assert rows.height == 80 and rows["request_key"].n_unique() == 80
    assert rows["id"].n_unique() == 80 and 1 <= shards_then < 16
    assert not (out / "curated.parquet").exists()  # the refused curate wrote nothing
    # The lock goes with its process: the same command now finds the run complete.
    again = other(*command[3:], "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["written"] == 80 and json.loads(again.stdout)["resumed"] == 80
