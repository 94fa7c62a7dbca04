"""Faults a user met, each replayed through the command line: a disk that fills during
generate or export, --overwrite on a folder localgen did not write, a folder or a
semicolon CSV given as data, a damaged model folder, a label name with a quote. Each ends
in one line on stderr, exit code 1, no traceback, and nothing of the user's removed."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result

from localgen.cli import cli
from tests.helpers import EXAMPLE_SEED, EXAMPLE_TASK, EXAMPLE_TEST

FAKE = ["--engine", "fake", "--quiet"]
NO_SPACE = "failed to write parquet: No space left on device (os error 28)"


def _invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_line(result: Result) -> str:
    """The single stderr line of a command that failed cleanly."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )  # an uncaught exception would be a traceback outside CliRunner
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def _tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones too) and its text."""
    return {
        str(p.relative_to(folder)): p.read_text() if p.is_file() else "<dir>"
        for p in sorted(folder.rglob("*"))
    }


def test_a_disk_that_fills_during_generate_is_one_line_and_the_run_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Polars reports a full disk as ComputeError, not OSError: the shard writer must
    still give one line, the manifest must say "interrupted", and a rerun must finish."""
    real_write = pl.DataFrame.write_parquet
    shards: list[object] = []

    def fills_up(self: pl.DataFrame, file: object, *args: object, **kwargs: object) -> None:
        if len(shards) >= 3:
            raise pl.exceptions.ComputeError(NO_SPACE)
        shards.append(file)
        real_write(self, file, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pl.DataFrame, "write_parquet", fills_up)
    out = tmp_path / "run"
    args = ["generate", EXAMPLE_TASK, "-n", "1000", "--shard-rows", "10", *FAKE, "--out", out]
    line = _one_line(_invoke(*args))
    assert line.startswith(f"Error: cannot write {out / 'shards'}"), line
    assert line.endswith(": No space left on device"), line
    interrupted = json.loads((out / "manifest.json").read_text())
    assert interrupted["status"] == "interrupted"
    stored = pl.scan_parquet(out / "shards").select(pl.len()).collect().item()
    assert stored == 30  # the three shards written before the fault
    assert not list(out.rglob("*.tmp"))

    monkeypatch.undo()  # space again
    again = _invoke(*args)
    assert again.exit_code == 0, again.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    rows = pl.read_parquet(out / "synthetic.parquet")
    assert rows.height == manifest["plan"]["rows"] == 4 * 1000
    assert rows["request_key"].n_unique() == rows.height
    # Last, as it needs a change in generate.py (see the report): the interrupted
    # manifest counted the 10 rows whose shard the full disk refused as stored.
    assert interrupted["counts"]["stored"] == stored


@pytest.mark.parametrize(
    ("suffix", "sink"),
    [("parquet", "sink_parquet"), ("jsonl", "sink_ndjson"), ("csv", "sink_csv")],
)
def test_export_to_a_full_disk_names_the_file_it_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str, sink: str
) -> None:
    run = tmp_path / "run"
    assert _invoke("generate", EXAMPLE_TASK, "-n", "1", *FAKE, "--out", run).exit_code == 0

    def no_space(self: pl.LazyFrame, path: object, *args: object, **kwargs: object) -> None:
        Path(str(path)).write_bytes(b"half a file")  # what a full disk leaves
        raise pl.exceptions.ComputeError(NO_SPACE)

    monkeypatch.setattr(pl.LazyFrame, sink, no_space)
    target = tmp_path / "exports" / f"rows.{suffix}"
    line = _one_line(_invoke("export", run, "--out", target))
    assert line == f"Error: cannot write {target}: No space left on device"
    assert not target.exists() and not list(target.parent.iterdir())  # no temporary left
    assert pl.read_parquet(run / "synthetic.parquet").height == 4  # the input is untouched


def _foreign_folder(tmp_path: Path) -> Path:
    """A user's folder with their own files, not a localgen run."""
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("my notes")
    (folder / "sub" / "data.csv").write_text("a,b\n1,2\n")
    return folder


RUN_ARGS = ["--real", EXAMPLE_SEED, "--test", EXAMPLE_TEST]
RUN_ARGS += ["--text-column", "message", "--label-column", "team"]


@pytest.mark.parametrize(
    "command",
    [
        ["generate", EXAMPLE_TASK, "-n", "1", *FAKE],
        ["run", EXAMPLE_TASK, "-n", "1", *FAKE, *RUN_ARGS],
    ],
    ids=["generate", "run"],
)
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_a_folder_localgen_did_not_write_is_refused_and_left_as_it_was(
    tmp_path: Path, command: list[str | Path], overwrite: list[str]
) -> None:
    """--overwrite used to empty it (notes, subfolders and all), and a refusal left the
    writer lock behind in it."""
    folder = _foreign_folder(tmp_path)
    before = _tree(folder)
    line = _one_line(_invoke(*command, "--out", folder, *overwrite))
    assert "holds files localgen did not write" in line, line
    assert "choose an empty or new folder" in line and "--overwrite" not in line
    assert _tree(folder) == before  # nothing removed, and no .localgen.lock added


def test_overwrite_replaces_a_run_but_keeps_what_the_user_put_in_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["generate", EXAMPLE_TASK, "-n", "1", *FAKE, "--out", out]
    assert _invoke(*args, "--seed", "1").exit_code == 0
    (out / "notes.txt").write_text("what I saw in this run")
    refused = _one_line(_invoke(*args, "--seed", "2"))
    assert "holds a different run" in refused
    assert _invoke(*args, "--seed", "2", "--overwrite").exit_code == 0
    assert json.loads((out / "manifest.json").read_text())["plan"]["seed"] == 2
    assert (out / "notes.txt").read_text() == "what I saw in this run"


def test_seed_data_that_is_a_folder_is_named_a_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    line = _one_line(_invoke("generate", EXAMPLE_TASK, *FAKE, "--seed-data", tmp_path, "-o", out))
    assert line == (
        f"Error: {tmp_path} is a folder; give a data file (.csv, .tsv, .jsonl or .parquet)"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "content",
    [
        "message;team\nI was charged twice;billing\nThe app crashes;bug\n",
        'message;team\n"I was charged; twice";billing\n"The app, it crashes";bug\n',
    ],
    ids=["plain", "quoted"],
)
def test_a_semicolon_separated_csv_is_one_clear_line(tmp_path: Path, content: str) -> None:
    seed = tmp_path / "seed.csv"
    seed.write_text(content)
    args = ["generate", EXAMPLE_TASK, *FAKE, "-o", tmp_path / "run"]
    line = _one_line(
        _invoke(*args, "--seed-data", seed, "--text-column", "message", "--label-column", "team")
    )
    assert line == (
        f"Error: {seed}: the columns are separated by ';', not commas; "
        "save it as comma-separated CSV (or tab-separated, as .tsv)"
    )


@pytest.mark.parametrize(
    ("config", "why"),
    [
        ('{"model_type": "llama", ', "config.json is not valid JSON"),
        ("[1, 2]", "config.json is not a JSON object"),
        ('{"hidden_size": 64}', "config.json lacks model_type"),
    ],
    ids=["truncated", "not-an-object", "no-model-type"],
)
def test_a_damaged_model_config_is_one_line_before_any_engine_starts(
    tmp_path: Path, config: str, why: str
) -> None:
    """Without a checksum file nothing else catches it: vLLM printed pydantic's dump."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(config)
    (model / "tokenizer.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"0")
    out = tmp_path / "run"
    args = ["generate", EXAMPLE_TASK, "-n", "1", "--engine", "vllm", "-q", "-o", out]
    line = _one_line(_invoke(*args, "--model", model))
    assert line.startswith(f"Error: model folder {model}: {why}"), line
    assert not out.exists()


def test_a_label_name_with_a_quote_is_one_clear_line(tmp_path: Path) -> None:
    """The message named the regex the name failed ('^\\w[\\w .&/+:-]{0,63}$').

    NEEDS THE LEAD: the message comes from localgen/planning/task.py
    (_format_validation_error), which this change may not edit; see the report."""
    task = tmp_path / "task.toml"
    task.write_text(
        'name = "tiny"\ncontext = "Messages to a help desk."\n'
        '[labels.\'bill"ing\']\ndescription = "Money."\n'
        '[labels.bug]\ndescription = "Something is broken."\n'
    )
    line = _one_line(_invoke("generate", task, *FAKE, "-o", tmp_path / "run"))
    assert line.startswith(f"Error: {task}: label 'bill\"ing': "), line
    assert "pattern" not in line and "\\w" not in line
    assert "letters, digits" in line
