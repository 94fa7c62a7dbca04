from pathlib import Path

import pytest

from localgen.data import read_labeled
from localgen.errors import TaskError
from localgen.planning.plan import build_plan
from localgen.planning.prompts import PromptLibrary, Template
from localgen.planning.task import load_task


def test_counts_keys_and_schema_per_label(task_file: Path) -> None:
    plan = build_plan(load_task(task_file), seed=1)
    assert plan.counts() == {"billing": {"zero-shot": 3}, "bug": {"zero-shot": 3}}
    assert len({r.key for r in plan.requests}) == 6
    for r in plan.requests:
        assert r.schema.json_schema["properties"]["label"]["enum"] == [r.label]
        assert f'Category "{r.label}"' in r.prompt
        assert "at most 12 words" in r.prompt
        assert r.positive_ids == ()


def test_same_seed_same_plan_other_seed_other_plan(task_file: Path) -> None:
    task = load_task(task_file)
    a, b, c = build_plan(task, seed=7), build_plan(task, seed=7), build_plan(task, seed=8)
    assert [r.seed for r in a.requests] == [r.seed for r in b.requests]
    assert a.fingerprint == b.fingerprint
    assert [r.seed for r in a.requests] != [r.seed for r in c.requests]
    assert a.fingerprint != c.fingerprint
    assert build_plan(task, seed=7, count=4).fingerprint != a.fingerprint


def test_few_shot_shows_real_examples_of_the_label(task_file: Path, seed_csv: Path) -> None:
    data = read_labeled(seed_csv, "body", "cls")
    texts = dict(zip(data.frame["id"], data.frame["text"], strict=True))
    labels = dict(zip(data.frame["id"], data.frame["label"], strict=True))
    plan = build_plan(load_task(task_file), seed=0, strategy="few-shot", seed_data=data)
    for r in plan.requests:
        assert r.strategy == "few-shot" and r.template == "few-shot"
        k = 3 if r.label == "billing" else 2  # bug has only two real examples
        assert len(r.positive_ids) == k == len(set(r.positive_ids))
        for example_id in r.positive_ids:
            assert labels[example_id] == r.label
            assert f"- {texts[example_id]}" in r.prompt


def test_few_shot_falls_back_for_labels_without_examples(tmp_path: Path, task_file: Path) -> None:
    seed = tmp_path / "s.csv"
    seed.write_text("text,label\nrefund my last invoice please,billing\n")
    plan = build_plan(load_task(task_file), strategy="few-shot", seed_data=read_labeled(seed))
    assert plan.counts() == {"billing": {"few-shot": 3}, "bug": {"zero-shot": 3}}
    assert any("'bug' has no real examples" in n for n in plan.notes)


def test_few_shot_needs_seed_data(task_file: Path) -> None:
    with pytest.raises(TaskError, match="--seed-data"):
        build_plan(load_task(task_file), strategy="few-shot")


def test_templates_are_strict(tmp_path: Path) -> None:
    template = Template("t", "Hello {{ name }} {{ missing }}")
    with pytest.raises(TaskError, match="'missing' is undefined"):
        template.render(name="x")
    assert Template("t", "a").hash != Template("t", "b").hash
    (tmp_path / "broken.jinja").write_text("{% if %}")
    with pytest.raises(TaskError, match="template syntax error"):
        PromptLibrary(tmp_path).get("broken")
    with pytest.raises(TaskError, match="not found"):
        PromptLibrary(tmp_path).get("absent")
