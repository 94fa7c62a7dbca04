import shutil
import time
import tracemalloc
from pathlib import Path

import pytest

from localgen.data import LabeledData, read_labeled
from localgen.errors import TaskError
from localgen.planning.plan import PlanSpec, build_plan
from localgen.planning.prompts import PromptLibrary, Template
from localgen.planning.requests import request_seeds
from localgen.planning.task import load_task
from tests.helpers import BagOfWords


def test_counts_keys_and_schema_per_label(task_file: Path) -> None:
    plan = build_plan(load_task(task_file), PlanSpec(seed=1))
    assert plan.counts() == {"billing": {"zero-shot": 3}, "bug": {"zero-shot": 3}}
    assert len({r.key for r in plan.requests}) == 6
    for r in plan.requests:
        assert r.schema.json_schema["properties"]["label"]["enum"] == [r.label]
        assert f'Category "{r.label}"' in r.prompt
        assert "at most 12 words" in r.prompt
        assert r.positive_ids == ()


def test_same_seed_same_plan_other_seed_other_plan(task_file: Path) -> None:
    task = load_task(task_file)
    a, b, c = (
        build_plan(task, PlanSpec(seed=7)),
        build_plan(task, PlanSpec(seed=7)),
        build_plan(task, PlanSpec(seed=8)),
    )
    assert [r.seed for r in a.requests] == [r.seed for r in b.requests]
    assert a.fingerprint == b.fingerprint
    assert [r.seed for r in a.requests] != [r.seed for r in c.requests]
    assert a.fingerprint != c.fingerprint
    assert build_plan(task, PlanSpec(seed=7, count=4)).fingerprint != a.fingerprint


def test_few_shot_shows_real_examples_of_the_label(task_file: Path, seed_csv: Path) -> None:
    data = read_labeled(seed_csv, "body", "cls")
    texts = dict(zip(data.frame["id"], data.frame["text"], strict=True))
    labels = dict(zip(data.frame["id"], data.frame["label"], strict=True))
    plan = build_plan(load_task(task_file), PlanSpec(seed=0, strategy="few-shot", seed_data=data))
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
    plan = build_plan(
        load_task(task_file), PlanSpec(strategy="few-shot", seed_data=read_labeled(seed))
    )
    assert plan.counts() == {"billing": {"few-shot": 3}, "bug": {"zero-shot": 3}}
    assert any("'bug' has no real examples" in n for n in plan.notes)


def test_few_shot_needs_seed_data(task_file: Path) -> None:
    with pytest.raises(TaskError, match="--seed-data"):
        build_plan(load_task(task_file), PlanSpec(strategy="few-shot"))


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


def test_any_request_is_built_alone_and_equals_the_walked_one(
    task_file: Path, seed_csv: Path
) -> None:
    # Windows, resume and `plan` build requests by position: each must be the request a
    # walk from the start builds, whatever came before it.
    data = read_labeled(seed_csv, "body", "cls")
    strategies = ["zero-shot", "few-shot", "contrastive", "hierarchical"]
    plan = build_plan(
        load_task(task_file),
        PlanSpec(
            seed=3,
            count=9,
            strategy=strategies,
            seed_data=data,
            encoder=BagOfWords(),
        ),
    )
    walked = list(plan.steps())
    assert len(walked) == plan.rows == 18
    for position in (17, 0, 5, 9, 12, 3):
        assert plan.step(position) == walked[position]
    assert list(plan.steps(4, 11)) == walked[4:11]
    seeds = request_seeds(3, 0, 10_000)
    assert request_seeds(3, 4_095, 3) == seeds[4_095:4_098]  # across a draw of SEEDS_AT_ONCE
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2**31 for s in seeds)


def test_a_plan_of_a_billion_rows_is_counted_and_sampled_without_building_them(
    task_file: Path,
) -> None:
    tracemalloc.start()
    started = time.perf_counter()
    plan = build_plan(
        load_task(task_file), PlanSpec(count=500_000_000, strategy=["zero-shot", "hierarchical"])
    )
    first = plan.step(0)
    last = plan.step(plan.rows - 1)
    fingerprint = plan.fingerprint
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert plan.rows == 1_000_000_000 and plan.counts()["bug"]["hierarchical"] == 250_000_000
    assert plan.summaries == plan.second_pass_rows == 500_000_000
    assert first.requests[0].key == "billing-000000"
    [summary], [followup] = last.drafts, last.followups
    assert followup.key == "bug-499999999" and summary.key == "bug-499999999/summary"
    assert (
        fingerprint
        == build_plan(
            load_task(task_file),
            PlanSpec(count=500_000_000, strategy=["zero-shot", "hierarchical"]),
        ).fingerprint
    )
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MB held"  # a built plan would be ~3 TB
    assert seconds < 30  # generous on a loaded machine; it takes well under a second


def test_the_fingerprint_sees_the_data_and_the_templates(
    task_file: Path, seed_csv: Path, tmp_path: Path
) -> None:
    task = load_task(task_file)
    data = read_labeled(seed_csv, "body", "cls")
    base = build_plan(task, PlanSpec(strategy="few-shot", seed_data=data)).fingerprint
    fewer = data.frame.head(4)
    other = build_plan(task, PlanSpec(strategy="few-shot", seed_data=LabeledData(fewer, "x", 0)))
    assert other.fingerprint != base
    folder = tmp_path / "prompts"
    shutil.copytree(PromptLibrary().folder, folder)
    (folder / "few-shot.jinja").write_text((folder / "few-shot.jinja").read_text() + "\nMore.")
    edited = build_plan(
        task, PlanSpec(strategy="few-shot", seed_data=data, prompts=PromptLibrary(folder))
    )
    assert edited.fingerprint != base


def test_a_plan_grown_by_rounds_starts_with_the_plan_it_grew_from(
    task_file: Path, seed_csv: Path
) -> None:
    # run --keep grows a finished run: the rows stored must be the first rows of the
    # larger plan, unchanged, and its fingerprints must name the smaller plan.
    task, data = load_task(task_file), read_labeled(seed_csv, "body", "cls")
    strategies = ["zero-shot", "contrastive"]
    common = {"seed": 5, "strategy": strategies, "seed_data": data, "encoder": BagOfWords()}
    base = build_plan(task, PlanSpec(count=4, **common))
    grown = build_plan(
        task, PlanSpec(count=4, more=[{"bug": 6}, {"billing": 2, "bug": 0}], **common)
    )
    assert base.rows == 8 and grown.rows == 16
    assert list(grown.steps(0, base.rows)) == list(base.steps())
    assert grown.fingerprints[0] == base.fingerprint != grown.fingerprint
    assert len(grown.fingerprints) == 3 and len(set(grown.fingerprints)) == 3
    # A round that asks a label for nothing leaves the plan as it was.
    assert (
        grown.fingerprint
        == build_plan(
            task, PlanSpec(count=4, more=[{"bug": 6}, {"billing": 2}], **common)
        ).fingerprint
    )
    # Keys go on numbering the label's rows; seeds are new; each round splits its rows
    # among the strategies and contrastive asks its second half after the first pass.
    added = [k for k in grown.row_keys()][base.rows :]
    assert added == [f"bug-{i:06d}" for i in range(4, 10)] + ["billing-000004", "billing-000005"]
    assert grown.counts()["bug"] == {"zero-shot": 5, "contrastive": 5}
    seeds = [r.seed for r in grown.requests] + [f.request.seed for f in grown.followups]
    assert len(set(seeds)) == 16
    round_two = [b for b in grown.blocks if b.label == "bug" and b.index == 7]
    assert [(b.strategy, b.count, b.first_followup) for b in round_two] == [("contrastive", 3, 2)]
    with pytest.raises(TaskError, match="unknown label 'nope'"):
        build_plan(task, PlanSpec(count=4, more=[{"nope": 1}], **common))
