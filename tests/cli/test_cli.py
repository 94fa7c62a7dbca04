"""The command line: help everywhere, exit codes, one-line errors, no tracebacks."""

import json
import re
from pathlib import Path

import click
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from localgen.classify.classifier import TextClassifier
from localgen.cli import cli
from localgen.locks import LOCK_FILE
from localgen.vectors.encoder import default_encoder_path
from localgen.vectors.linear import LinearHead
from tests.helpers import EXAMPLE_SEED, EXAMPLE_TASK, make_run


def _invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    for name, command in group.commands.items():
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


def test_every_command_and_option_has_help() -> None:
    assert cli.help
    for name, command in _commands(cli):
        assert command.help and "Example" in command.help, name
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert param.help, f"{name} {param.opts}"
        result = _invoke(*name, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output


def test_version() -> None:
    """--version prints the version pip installed, which is also localgen.__version__."""
    import importlib.metadata

    import localgen

    installed = importlib.metadata.version("localgen")
    result = _invoke("--version")
    assert result.exit_code == 0
    assert result.output == f"localgen, version {installed}\n"
    assert localgen.__version__ == installed


FAKE_ARGS = ["-n", "2", "--engine", "fake", "--quiet"]


def test_generate_and_show_with_fake_engine(tmp_path: Path) -> None:
    out = tmp_path / "run"
    formats = ["--format", "parquet", "--format", "jsonl"]
    result = _invoke("generate", str(EXAMPLE_TASK), "--out", str(out), *FAKE_ARGS, *formats)
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(out / "synthetic.parquet"), str(out / "synthetic.jsonl")]
    assert "8/8 rows" in result.stderr
    shown = _invoke("show", str(out), "--limit", "3")
    assert shown.exit_code == 0
    assert shown.output.splitlines()[0] == (
        "8 rows: account_access 2, billing 2, bug 2, feature_request 2"
    )
    as_json = _invoke("show", str(out), "--json", "--limit", "2")
    assert [json.loads(line)["label"] for line in as_json.output.splitlines()] == [
        "account_access",
        "account_access",
    ]
    # Once curated, show samples the rows curation kept (--rows raw: every row).
    early = _invoke("show", str(out), "--rows", "curated")
    assert early.exit_code == 1 and "run localgen curate first" in early.output
    assert _invoke("curate", str(out), "--skip", "label-fidelity", "-q").exit_code == 0
    kept = pl.read_parquet(out / "curated.parquet")
    curated = _invoke("show", str(out), "--limit", "3")
    assert curated.output.splitlines()[0].startswith(
        f"{kept.height} rows kept by curation (curated.parquet): "
    )
    raw = _invoke("show", str(out), "--limit", "3", "--rows", "raw")
    assert raw.output.splitlines()[0].startswith("8 rows: ")


SEED_ARGS = ["--seed-data", str(EXAMPLE_SEED), "--text-column", "message", "--label-column", "team"]


def test_dry_run_prints_plan_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["-n", "5", "--strategy", "few-shot", *SEED_ARGS, "--dry-run"]
    result = _invoke("generate", str(EXAMPLE_TASK), "--out", str(out), *args)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("20 rows planned: 20 in the first pass")
    assert re.search(r"^bug\s+5\s+5$", result.output, re.MULTILINE)
    assert result.output.count("Real examples of this category:") == 1  # one per strategy
    assert not out.exists()


def test_plan_command_mixes_strategies_and_prints_json(tmp_path: Path) -> None:
    args = ["plan", str(EXAMPLE_TASK), "-n", "4", *SEED_ARGS, "--json"]
    args += ["--strategy", "few-shot", "--strategy", "hierarchical"]
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["rows"] == 16 and plan["summaries"] == 8 and plan["second_pass"] == 8
    assert plan["per_label"]["billing"] == {"few-shot": 2, "hierarchical": 2}
    shown = [(p["strategy"], p["key"].endswith("/summary")) for p in plan["prompts"]]
    assert shown == [("few-shot", False), ("hierarchical", True), ("hierarchical", False)]
    assert "<the summary written in the first pass>" in plan["prompts"][2]["prompt"]
    balanced = _invoke(*args[:2], "--balance", "9", *SEED_ARGS, "--json")
    # 6 real rows per label + 3; the task file's mix (zero-shot and attributes) splits them
    assert json.loads(balanced.output)["per_label"]["bug"] == {"zero-shot": 2, "attributes": 1}


def _seed_with_unknown_label(tmp_path: Path) -> Path:
    path = tmp_path / "seed.csv"
    path.write_text("text,label\nhello there,refunds\n")
    return path


GOOD_TASK = 'name = "t"\ncontext = "c"\n[labels.billing]\ndescription = "d"\n'
BAD_FILES: dict[str, bytes] = {
    "empty_task.toml": b"",
    "binary_task.toml": bytes(range(256)),
    "dup_label.toml": (GOOD_TASK + '[labels.billing]\ndescription = "again"\n').encode(),
    "case_labels.toml": (GOOD_TASK + '[labels.Billing]\ndescription = "d"\n').encode(),
    "unknown_key.toml": (GOOD_TASK + 'colour = "red"\n').encode(),
    "wrong_type.toml": (GOOD_TASK + '[generation]\ncount = "ten"\n').encode(),
    "zero_count.toml": (GOOD_TASK + "[generation]\ncount = 0\n").encode(),
    "no_labels.toml": b'name = "t"\ncontext = "c"\n[labels]\n',
    "latin1.csv": "text,label\ncaf\u00e9 cr\u00e8me,billing\n".encode("latin-1"),
    "ragged.csv": b'text,label\n"a",billing,extra,more\nb\n',
    "no_text.csv": b"body,label\nhello,billing\n",
    "empty.csv": b"",
    "binary.parquet": b"PAR1 this is not parquet",
    "blank_reject.txt": b"\n  \n",
    "unknown_id_reject.txt": b"syn-0123456789abcdef\n",
}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["generate", "missing.toml", "--out", "{tmp}/r"], 1, "task file not found"),
        (["generate", "{task}", "--out", "{tmp}/r", "-n", "0"], 2, "-n"),
        (["generate", "{task}", "--out", "{tmp}/r", "--engine", "gpt"], 2, "--engine"),
        (
            [
                "generate",
                "{task}",
                "--out",
                "{tmp}/r",
                "--seed-data",
                "{tmp}/nope.csv",
                "--strategy",
                "few-shot",
            ],
            1,
            "data file not found",
        ),
        (
            ["generate", "{task}", "--out", "{tmp}/r", "--seed-data", "{unknown_label}"],
            1,
            "labels not in the task file: 'refunds'",
        ),
        (
            ["generate", "{task}", "--out", "{tmp}/r", "--strategy", "few-shot"],
            1,
            "pass --seed-data FILE",
        ),
        (
            ["generate", "{task}", "--out", "{tmp}/r", "--model", "{tmp}"],
            1,
            "is not a model folder: it has no config.json",
        ),
        (
            ["generate", "{task}", "--out", "{tmp}/r", "--model", "{tmp}/none"],
            1,
            "model folder not found",
        ),
        (["generate", "{task}", "--out", "{task}", "--engine", "fake"], 1, "is a file"),
        (
            [
                "generate",
                "{task}",
                "--out",
                "{tmp}/r",
                "--engine",
                "vllm",
                "--backend",
                "magic",
                "--model",
                "{fake_model}",
            ],
            1,
            "no decoding backend 'magic'",
        ),
        (["show", "{tmp}/nothing"], 1, "has no synthetic.parquet"),
        (["plan", "{task}", "--strategy", "magic"], 2, "--strategy"),
        (["plan", "{task}", "--strategy", "attributes"], 1, "needs attribute pools"),
        (["plan", "{task}", "--strategy", "contrastive"], 1, "pass --seed-data FILE"),
        (["plan", "{task}", "--balance"], 1, "pass --seed-data FILE"),
        (["plan", "{task}", "--balance", "lots"], 2, "give 'majority' or a number"),
        (["plan", "{task}", "--balance", "3", "-n", "2"], 2, "either --count or --balance"),
        (["plan", "{task}", "--reject", "{tmp}/no.txt"], 1, "reject file not found"),
        (["plan", "{tmp}/empty_task.toml"], 1, "name: Field required"),
        (["plan", "{tmp}/binary_task.toml"], 1, "not a UTF-8 text file"),
        (["plan", "{tmp}/dup_label.toml"], 1, "not valid TOML"),
        (["plan", "{tmp}/case_labels.toml"], 1, "differ only in letter case"),
        (["plan", "{tmp}/unknown_key.toml"], 1, "colour: unknown key"),
        (["plan", "{tmp}/wrong_type.toml"], 1, "generation.count"),
        (["plan", "{tmp}/zero_count.toml"], 1, "generation.count"),
        (["plan", "{tmp}/no_labels.toml"], 1, "[labels] is empty"),
        (["plan", "{tmp}", "-n", "1"], 1, "task file not found"),
        (["plan", "{task}", "--seed-data", "{tmp}/latin1.csv"], 1, "cannot read as csv"),
        (["plan", "{task}", "--seed-data", "{tmp}/ragged.csv"], 1, "cannot read as csv"),
        (["plan", "{task}", "--seed-data", "{tmp}/no_text.csv"], 1, "no column 'text'"),
        (["plan", "{task}", "--seed-data", "{tmp}/empty.csv"], 1, "the file is empty"),
        (
            ["plan", "{task}", "--seed-data", "{seed}", "--label-column", "team"],
            1,
            "no column 'team'",
        ),
        (["plan", "{task}", "--seed-data", "{tmp}/binary.parquet"], 1, "cannot read as parquet"),
        (
            ["plan", "{task}", "--seed-data", "{seed}", "--text-column", "body"],
            1,
            "no column 'body'",
        ),
        (["plan", "{task}", "--reject", "{tmp}/blank_reject.txt"], 1, "no rejected texts"),
        (["plan", "{task}", "--reject", "{tmp}/unknown_id_reject.txt"], 1, "is not in"),
        (["generate", "{task}", "--out", "{tmp}/r", "-n", "-3"], 2, "-n"),
        (["generate", "{task}", "--out", "{tmp}/r", "--format", "xml"], 2, "--format"),
        (["models", "verify", "{tmp}/none"], 1, "model folder not found"),
        (["show", "{task}"], 1, "has no synthetic.parquet"),
        (["curate", "{tmp}/nothing"], 1, "has no synthetic.parquet"),
        (["curate", "{run}", "--real", "{tmp}/nope.csv"], 1, "data file not found"),
        (["curate", "{run}", "--eval", "{tmp}/no_text.csv"], 1, "no column 'text'"),
        (["curate", "{run}", "--real", "{unknown_label}"], 1, "labels not in the task file"),
        (["curate", "{run}", "--real", "{tmp}/binary.parquet"], 1, "cannot read as parquet"),
        (["curate", "{run}", "--skip", "magic"], 2, "--skip"),
        (["curate", "{run}", "--near-duplicate", "1.5"], 2, "--near-duplicate"),
        (["curate", "{run}", "--leak-words", "1"], 2, "--leak-words"),
        (["report", "{tmp}/nothing"], 1, "has no synthetic.parquet"),
        (["report", "{run}", "--rows", "curated"], 1, "run localgen curate first"),
        (["report", "{run}", "--real", "{tmp}/latin1.csv"], 1, "cannot read as csv"),
        (["plan", "{task}", "--anchors", "{seed}"], 1, "needs real examples"),
        (
            [
                "plan",
                "{task}",
                "--seed-data",
                "{seed}",
                "--anchors",
                "{seed}",
                "--strategy",
                "few-shot",
            ],
            1,
            "contrastive strategy only",
        ),
        (["train", "--out", "{tmp}/r"], 1, "nothing to train on"),
        (["train", "--real", "{tmp}/nope.csv", "--out", "{tmp}/r"], 1, "data file not found"),
        (["train", "--synthetic", "{tmp}/none", "--out", "{tmp}/r"], 1, "not a localgen run"),
        (["train", "--real", "{seed}", "--out", "{tmp}/r"], 1, "at least two labels"),
        (["train", "--real", "{seed}", "--out", "{tmp}/r", "--c", "0"], 2, "--c"),
        (["train", "--real", "{tmp}/empty.csv", "--out", "{tmp}/r"], 1, "the file is empty"),
        (
            ["train", "--real", "{seed}", "--out", "{tmp}/r", "--encoder", "{tmp}/none"],
            1,
            "not a Hugging Face model folder",
        ),
        (["train", "--real", "{seed}", "--out", "{task}"], 1, "is a file"),
        (["evaluate", "{tmp}/none", "{seed}"], 1, "not found; train one"),
        (["evaluate", "{run}", "{seed}"], 1, "has no model.json"),
        (["evaluate", "{model}", "{unknown_label}"], 1, "not in the model's labels: 'refunds'"),
        (["evaluate", "{model}", "{tmp}/no_text.csv"], 1, "no column 'text'"),
        (["evaluate", "{model}", "{seed}", "--resamples", "-1"], 2, "--resamples"),
        (["predict", "{model}", "{tmp}/blank_reject.txt"], 1, "no texts in it"),
        (["predict", "{model}", "{tmp}/empty.csv"], 1, "the file is empty"),
        (["predict", "{model}", "{seed}", "--format", "xml"], 2, "--format"),
        (["predict", "{broken_model}", "{seed}"], 1, "not a localgen model description"),
        (["export", "{tmp}/none", "--out", "{tmp}/x.jsonl"], 1, "not a localgen run folder"),
        (["export", "{run}", "--out", "{tmp}/x.txt"], 1, "must end in .parquet, .jsonl or .csv"),
        (["export", "{run}", "--out", "{tmp}/x.csv", "--format", "jsonl"], 2, "not end in .jsonl"),
        (["export", "{run}", "--out", "{run}/synthetic.parquet"], 1, "the run's own output"),
        (["export", "{run}", "--out", "{tmp}/x.csv", "--rows", "curated"], 1, "run localgen cur"),
        (["export", "{run}", "--out", "{task}/x.csv"], 1, "cannot create"),
        (["completion", "tcsh"], 2, "'tcsh' is not one of"),
        (["generate", "{task}", "--out", "{tmp}/r", "--engine", "openai"], 1, "needs --base-url"),
        (
            ["generate", "{task}", "--out", "{tmp}/r", "--engine", "openai", "--base-url", "x"],
            1,
            "--base-url must be http://HOST:PORT/v1",
        ),
        (
            ["generate", "{task}", "-o", "{tmp}/r", "--engine", "openai", "--base-url", "{remote}"],
            1,
            "refusing to send prompts to gpu01.example.org",
        ),
        (
            ["generate", "{task}", "--out", "{tmp}/r", "--base-url", "http://127.0.0.1:1/v1"],
            1,
            "--base-url is for --engine openai",
        ),
        (
            ["generate", "{task}", "-o", "{tmp}/r", "--engine", "openai", "--base-url", "{closed}"],
            1,
            "cannot reach the server at http://127.0.0.1:9/v1",
        ),
        (
            ["generate", "{task}", "-o", "{tmp}/r", "--engine", "openai", "--backend", "xgrammar"],
            1,
            "the openai engine has no decoding backend 'xgrammar'",
        ),
        (
            ["generate", "{task}", "-o", "{tmp}/r", "--engine", "openai", "--replicas", "2"],
            1,
            "--replicas and --ray-address run vllm, transformers or fake, not openai",
        ),
        (
            ["generate", "{task}", "-o", "{tmp}/r", "--ray-address", "gpu01:6379"],
            1,
            "refusing to join the Ray cluster at gpu01:6379",
        ),
        (["generate", "{task}", "-o", "{tmp}/r", "--replicas", "0"], 2, "--replicas"),
        (
            [
                "generate",
                "{task}",
                "-o",
                "{tmp}/r",
                "--engine",
                "transformers",
                "--tensor-parallel-size",
                "2",
            ],
            1,
            "--tensor-parallel-size is a vllm setting",
        ),
        (["serve", "--model", "{tmp}/none"], 1, "model folder not found"),
        (["serve", "--port", "0"], 2, "--port"),
        (["models", "unbundle", "{tmp}/none.tar"], 1, "bundle not found"),
        (["models", "bundle", "{tmp}/none", "--out", "{tmp}/b.tar"], 1, "model folder not found"),
        (["models", "import", "{seed}"], 1, "is not a GGUF file"),
    ],
)
def test_errors_are_one_line_with_exit_code(
    tmp_path: Path, task_file: Path, args: list[str], code: int, message: str
) -> None:
    fake_model = tmp_path / "fm"
    fake_model.mkdir()
    (fake_model / "config.json").write_text("{}")
    (fake_model / "model.safetensors").write_bytes(b"0")
    (fake_model / "tokenizer.json").write_text("{}")
    for name, content in BAD_FILES.items():
        (tmp_path / name).write_bytes(content)
    seed = tmp_path / "good_seed.csv"
    seed.write_text("text,label\nrefund me,billing\n")
    values = {
        "remote": "http://gpu01.example.org:8000/v1",
        "closed": "http://127.0.0.1:9/v1",
        "seed": str(seed),
        "tmp": str(tmp_path),
        "task": str(task_file),
        "fake_model": str(fake_model),
        "unknown_label": str(_seed_with_unknown_label(tmp_path)),
    }
    run = make_run(tmp_path, [{"text": "refund my invoice please", "label": "billing"}])
    values["run"] = str(run)
    if "{model}" in args:
        head = LinearHead(("billing", "bug"), np.zeros((2, 384)), np.zeros(2))
        TextClassifier(default_encoder_path(), head).save(tmp_path / "model")
        values["model"] = str(tmp_path / "model")
    broken = tmp_path / "broken_model"
    broken.mkdir()
    (broken / "model.json").write_text('{"format_version": 1}')
    values["broken_model"] = str(broken)
    result = CliRunner().invoke(cli, [a.format(**values) for a in args])
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    if code == 1:
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
    # Nothing written but, where a writer ran, its lock (left in place: see localgen.locks).
    left = sorted(p.name for p in run.iterdir() if p.name != LOCK_FILE)
    assert left == ["manifest.json", "synthetic.parquet"]


def test_export_writes_every_format_and_they_load_back(tmp_path: Path) -> None:
    import polars as pl

    out = tmp_path / "run"
    assert _invoke("generate", str(EXAMPLE_TASK), "--out", str(out), *FAKE_ARGS).exit_code == 0
    rows = pl.read_parquet(out / "synthetic.parquet")
    loaded = {}
    for fmt, read in (
        ("parquet", pl.read_parquet),
        ("jsonl", pl.read_ndjson),
        ("csv", pl.read_csv),
    ):
        target = tmp_path / "exports" / f"rows.{fmt}"
        result = _invoke("export", str(out), "--out", str(target))
        assert result.exit_code == 0 and result.stdout.strip() == str(target)
        loaded[fmt] = read(target)
        assert loaded[fmt]["text"].to_list() == rows["text"].to_list()
        assert loaded[fmt]["label"].to_list() == rows["label"].to_list()
    assert loaded["parquet"].equals(rows)
    assert loaded["jsonl"].columns == rows.columns
    # CSV has no lists: they are JSON arrays that parse back to the same ids.
    ids = [json.loads(v) for v in loaded["csv"]["positive_ids"].to_list()]
    assert ids == rows["positive_ids"].to_list()
    minimal = _invoke(
        "export", str(out), "-o", str(tmp_path / "m"), "--format", "csv", "--columns", "minimal"
    )
    assert minimal.exit_code == 0
    assert pl.read_csv(tmp_path / "m.csv").columns == ["text", "label"]

    # The same files load directly in pandas and in Hugging Face datasets.
    import datasets
    import pandas as pd

    exports = tmp_path / "exports"
    for fmt, frame in (
        ("parquet", pd.read_parquet(exports / "rows.parquet")),
        ("jsonl", pd.read_json(exports / "rows.jsonl", lines=True)),
        ("csv", pd.read_csv(exports / "rows.csv")),
    ):
        assert frame["text"].tolist() == rows["text"].to_list(), fmt
        builder = "json" if fmt == "jsonl" else fmt
        loaded_ds = datasets.load_dataset(
            builder,
            data_files=str(exports / f"rows.{fmt}"),
            split="train",
            cache_dir=str(tmp_path / "hf-cache"),
        )
        assert loaded_ds["text"] == rows["text"].to_list(), fmt
        assert loaded_ds["label"] == rows["label"].to_list(), fmt


def test_json_output_composes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = _invoke("generate", str(EXAMPLE_TASK), "--out", str(out), *FAKE_ARGS, "--json")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert (summary["planned"], summary["written"], summary["failed"]) == (8, 8, 0)
    assert summary["outputs"] == [str(out / "synthetic.parquet")]
    dry = _invoke("generate", str(EXAMPLE_TASK), "--out", str(out), "--dry-run", "--json")
    assert json.loads(dry.stdout)["rows"] == 4 * 20  # the task file's count


def test_shell_completion_knows_the_commands() -> None:
    from click.shell_completion import BashComplete

    complete = BashComplete(cli, {}, "localgen", "_LOCALGEN_COMPLETE")
    assert [c.value for c in complete.get_completions(["models"], "un")] == ["unbundle"]
    assert "--base-url" in [c.value for c in complete.get_completions(["generate"], "--ba")]
    script = _invoke("completion", "bash")
    assert script.exit_code == 0 and "_LOCALGEN_COMPLETE=bash_complete" in script.stdout


def test_environment_variables_set_the_defaults(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {"LOCALGEN_ENGINE": "fake"}
    result = CliRunner().invoke(
        cli, ["generate", str(EXAMPLE_TASK), "-o", str(out), "-n", "1", "-q"], env=env
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["engine"]["name"] == "fake"
    # LOCALGEN_ALLOW_HOSTS is a space-separated list; a host on it passes the check, and
    # the run then stops only because nothing answers there.
    env = {
        "LOCALGEN_ENGINE": "openai",
        "LOCALGEN_BASE_URL": "http://gpu01.invalid:8000/v1",
        "LOCALGEN_ALLOW_HOSTS": "other.invalid gpu01.invalid",
    }
    result = CliRunner().invoke(
        cli, ["generate", str(EXAMPLE_TASK), "-o", str(tmp_path / "r")], env=env
    )
    assert result.exit_code == 1
    assert "cannot reach the server at http://gpu01.invalid:8000/v1" in result.stderr
    env["LOCALGEN_ALLOW_HOSTS"] = "other.invalid"
    result = CliRunner().invoke(
        cli, ["generate", str(EXAMPLE_TASK), "-o", str(tmp_path / "r")], env=env
    )
    assert result.exit_code == 1 and "refusing to send prompts to gpu01.invalid" in result.stderr


def test_seed_data_with_conflicting_labels_warns_or_with_strict_stops(tmp_path: Path) -> None:
    seed = tmp_path / "seed.csv"
    seed.write_text(
        "text,label\nThe app crashes on export,bug\nthe app crashes on export!,billing\n"
        "I need last year's invoices,billing\n"
    )
    args = ["generate", str(EXAMPLE_TASK), "--engine", "fake", "-n", "1", "--seed-data"]
    args += [str(seed), "--strategy", "zero-shot", "--no-check-labels"]
    warned = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "run")])
    assert warned.exit_code == 0, warned.output
    assert (
        f"warning: {seed}: 1 text with two or more labels, e.g. 'The app crashes on export' "
        "(bug, billing); --strict makes this an error"
    ) in warned.stderr.splitlines()
    strict = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "strict"), "--strict"])
    assert strict.exit_code == 1
    assert strict.stderr.strip().splitlines() == [
        f"Error: {seed}: 1 text with two or more labels, e.g. 'The app crashes on export' "
        "(bug, billing) (--strict)"
    ]
    assert not (tmp_path / "strict").exists()
