from pathlib import Path

import pytest

from localgen.errors import TaskError
from localgen.planning.task import load_task, parse_task
from tests.helpers import EXAMPLE_TASK, TASK_TOML


def test_example_task_is_valid() -> None:
    task = load_task(EXAMPLE_TASK)
    assert task.label_names == ["billing", "bug", "account_access", "feature_request"]
    assert task.generation.count == 20


def test_defaults_and_long_texts() -> None:
    task = parse_task(TASK_TOML)
    assert task.generation.max_words == 12
    assert task.generation.text_max_chars == 7 * 12
    long = parse_task(TASK_TOML.replace("max_words = 12", "max_words = 600"))
    assert long.generation.text_max_chars == 7 * 600  # no silent cap
    chars = parse_task(TASK_TOML.replace("max_words = 12", "max_words = 600\nmax_chars = 4000"))
    assert chars.generation.text_max_chars == 4000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (TASK_TOML + "\ncolour = 'red'\n", "colour: unknown key"),
        (TASK_TOML.replace("count = 3", "cuont = 3"), "generation.cuont: unknown key"),
        (TASK_TOML.replace("count = 3", "count = 0"), "generation.count"),
        (TASK_TOML.replace("count = 3", "count = -4"), "generation.count"),
        (TASK_TOML.replace("count = 3", "count = 'many'"), "generation.count"),
        (TASK_TOML.replace("[labels.bug]", "[labels.billing]"), "not valid TOML"),
        ('name = "x"\ncontext = "y"\n[labels]\n', "[labels] is empty"),
        ('name = "x"\ncontext = "y"\n', "labels: Field required"),
        (
            'name = "x"\ncontext = "y"\n[labels.Bug]\ndescription = "a"\n[labels.bug]\n'
            'description = "b"\n',
            "differ only in letter case",
        ),
        (
            'name = "x"\ncontext = "y"\n[labels."say \\"hi\\""]\ndescription = "a"\n',
            "a label name is letters",
        ),
        ("name = ", "not valid TOML"),
    ],
)
def test_invalid_tasks_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(TaskError) as err:
        parse_task(text, source="t.toml")
    assert message in str(err.value)
    assert str(err.value).startswith("t.toml: ")
    assert "\n" not in str(err.value)


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="task file not found"):
        load_task(tmp_path / "nope.toml")
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TaskError, match="not a UTF-8 text file"):
        load_task(binary)
