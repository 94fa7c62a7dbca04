"""Property-based tests of the readers and the task-file parser (hypothesis).

Whatever the bytes, a reader returns clean rows or raises its own one-line error; it
never crashes with another exception. What is written by one tool reads back the same.
"""

import json
import string
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from localgen.data import read_labeled
from localgen.errors import DataError, TaskError
from localgen.generation.rejects import read_rejects
from localgen.planning.task import STRATEGIES, parse_task

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FILES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@FILES
@given(content=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".tsv", ".jsonl"]))
def test_any_bytes_read_cleanly_or_fail_with_one_line(
    tmp_path: Path, content: bytes, suffix: str
) -> None:
    path = tmp_path / f"data{suffix}"
    path.write_bytes(content)
    try:
        data = read_labeled(path)
    except DataError as e:
        assert "\n" not in str(e)
        return
    frame = data.frame
    assert frame.columns == ["id", "text", "label"] and frame.height > 0
    assert all(t and t == t.strip() for t in frame["text"])
    assert all(lab and lab == lab.strip() for lab in frame["label"])


texts = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FFF, exclude_categories=("Cs",)),
    min_size=1,
    max_size=60,
)
labels = st.text(alphabet=string.ascii_letters + "_-", min_size=1, max_size=12)


@FILES
@given(rows=st.lists(st.tuples(texts, labels), min_size=1, max_size=20))
def test_written_tables_read_back_the_same(tmp_path: Path, rows: list[tuple[str, str]]) -> None:
    rows = [(t, lab) for t, lab in rows if t.strip()]
    if not rows:
        return
    frame = pl.DataFrame(rows, schema=["text", "label"], orient="row")
    for suffix, write in (
        (".csv", frame.write_csv),
        (".jsonl", frame.write_ndjson),
        (".parquet", frame.write_parquet),
    ):
        path = tmp_path / f"d{suffix}"
        write(path)
        data = read_labeled(path)
        assert data.frame["text"].to_list() == [t.strip() for t, _ in rows]
        assert data.frame["label"].to_list() == [lab for _, lab in rows]
        assert data.frame["id"].n_unique() == len(set((t.strip(), lab) for t, lab in rows))


@FILES
@given(lines=st.lists(texts, min_size=1, max_size=10))
def test_reject_lists_keep_every_non_blank_line(tmp_path: Path, lines: list[str]) -> None:
    lines = [line.replace("\r", " ").replace("\n", " ") for line in lines]
    path = tmp_path / "rejected.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    wanted = [line.strip() for line in lines if line.strip()]
    try:
        got = read_rejects(path)
    except DataError as e:
        assert not wanted or "is not in" in str(e)  # a line that looks like a row id
        return
    assert [r.text for r in got] == wanted


@FAST
@given(text=st.text(max_size=300))
def test_any_text_parses_to_a_task_or_a_task_error(text: str) -> None:
    try:
        task = parse_task(text)
    except TaskError as e:
        assert "\n" not in str(e).split(": not valid TOML")[0]
        return
    assert task.labels and task.generation.count > 0


def _toml_value(value: object) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


values = st.one_of(
    st.integers(-5, 50),
    st.floats(-1, 3, allow_nan=False),
    st.booleans(),
    st.text(max_size=10),
    st.lists(st.sampled_from([*STRATEGIES, "x"]), max_size=3),
)
generation_keys = st.sampled_from(
    [
        "count",
        "strategy",
        "temperature",
        "top_p",
        "max_words",
        "max_chars",
        "few_shot_k",
        "balance",
        "instructions",
        "style",
        "colour",
    ]
)


@FAST
@given(
    generation=st.dictionaries(generation_keys, values, max_size=5),
    label_names=st.lists(st.text(min_size=1, max_size=8), min_size=0, max_size=4),
)
@example(generation={}, label_names=["\n"])  # found by hypothesis: a label that is a line break
def test_structured_tasks_validate_or_name_the_key(
    generation: dict[str, object], label_names: list[str]
) -> None:
    lines = ['name = "t"', 'context = "c"', "[generation]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in generation.items()]
    for name in label_names:
        lines += [f"[labels.{json.dumps(name)}]", 'description = "d"']
    try:
        task = parse_task("\n".join(lines))
    except TaskError as e:
        message = str(e)
        assert message.startswith("task: ") and "\n" not in message
        return
    assert set(task.generation.strategy) <= set(STRATEGIES)
    assert task.generation.count > 0 and len(task.labels) == len(set(label_names))
