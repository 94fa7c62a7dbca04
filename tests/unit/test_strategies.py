"""Each generation strategy: its prompt, its provenance, and the passes it needs.

Plans are built with a planted sentence encoder (vectors chosen by hand) so nearest
neighbours are known; runs use the fake engine. The real encoder and the real vLLM
engine are exercised in tests/integration/test_vllm.py.
"""

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from localgen.config import EngineSettings, GenerateConfig
from localgen.data import read_labeled
from localgen.engines.fake import FakeEngine
from localgen.errors import DataError, TaskError
from localgen.generation.generate import generate
from localgen.generation.rejects import read_rejects
from localgen.models.resolve import ModelRef
from localgen.planning.check import CHECK_SUFFIX
from localgen.planning.plan import PlanSpec, build_plan, split_count
from localgen.planning.requests import SUMMARY_SUFFIX
from localgen.planning.task import parse_task

FAKE_MODEL = ModelRef("fake-model", Path("/models/fake"), "cafe0000cafe0000")

TASK = """
name = "strategies"
context = "Messages to a help desk."

[generation]
count = 6
max_words = 12
instructions = "Write in British English."

[generation.contrastive]
positives = 2
boundary = 1
rejected = 1
earlier = 2

[attributes]
tone = ["angry", "polite", "confused"]
channel = ["e-mail", "chat"]

[labels.billing]
description = "Money: invoices and refunds."
instructions = "Mention an amount of money."
attributes.tone = ["polite"]

[labels.bug]
description = "Something is broken."
attributes.severity = ["minor", "blocking"]
"""

# Real examples and where the planted encoder puts them (unit vectors in the plane/space).
SEED = {
    ("refund my invoice please", "billing"): (1.0, 0.0, 0.0),
    ("charged twice this month", "billing"): (0.9, 0.1, 0.0),
    ("change my payment card", "billing"): (0.0, 0.2, 1.0),
    ("the refund page shows an error", "bug"): (0.8, 0.3, 0.0),  # close to billing
    ("app crashes on start", "bug"): (0.0, 1.0, 0.0),
}


class PlantedEncoder:
    """Vectors from SEED; any other text is far from all of them."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        table = {text: vec for (text, _), vec in SEED.items()}
        rows = [np.array(table.get(t, (0.0, -1.0, 0.0))) for t in texts]
        return np.array([r / np.linalg.norm(r) for r in rows], dtype=np.float32)


@pytest.fixture
def seed_file(tmp_path: Path) -> Path:
    path = tmp_path / "seed.csv"
    lines = ["text,label"] + [f"{t},{lab}" for t, lab in SEED]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def strategy_task(write_task: Callable[..., Path]) -> Path:
    return write_task(TASK, "strategies.toml")


def _plan(task_path: Path, seed_file: Path | None = None, **kw):  # type: ignore[no-untyped-def]
    data = read_labeled(seed_file) if seed_file else None
    task = parse_task(task_path.read_text())
    return build_plan(task, PlanSpec(seed_data=data, encoder=PlantedEncoder(), **kw))  # type: ignore[arg-type]


def _generate(task: Path, out: Path, engine: FakeEngine | None = None, **kw):  # type: ignore[no-untyped-def]
    config = GenerateConfig(
        task_path=task, out=out, quiet=True, engine=EngineSettings(name="fake"), **kw
    )
    return generate(config, engine=engine or FakeEngine(), model=FAKE_MODEL)


# --- the task file ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "weights"),
    [
        ('"few-shot"', {"few-shot": 1.0}),
        ('["few-shot", "attributes"]', {"few-shot": 1.0, "attributes": 1.0}),
        ("{ contrastive = 2, zero-shot = 1 }", {"contrastive": 2.0, "zero-shot": 1.0}),
    ],
)
def test_strategy_spellings(spelling: str, weights: dict[str, float]) -> None:
    task = parse_task(TASK.replace("count = 6", f"count = 6\nstrategy = {spelling}"))
    assert task.generation.strategy == weights


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('strategy = "magic"', "unknown strategy 'magic'"),
        ('strategy = ["few-shot", "few-shot"]', "listed twice"),
        ("strategy = { few-shot = 0 }", "positive weight"),
        ('balance = "most"', "generation.balance"),
        ("balance = -3", "generation.balance"),
    ],
)
def test_bad_strategy_settings(line: str, message: str) -> None:
    with pytest.raises(TaskError, match=message):
        parse_task(TASK.replace("count = 6", f"count = 6\n{line}"))


def test_attribute_pools_per_label_and_duplicates() -> None:
    task = parse_task(TASK)
    assert task.pools_for("billing") == {"tone": ["polite"], "channel": ["e-mail", "chat"]}
    assert task.pools_for("bug")["severity"] == ["minor", "blocking"]
    assert task.pools_for("bug")["tone"] == ["angry", "polite", "confused"]
    with pytest.raises(TaskError, match="lists a value twice"):
        parse_task(TASK.replace('"e-mail", "chat"', '"chat", "chat"'))


def test_split_count_is_proportional_and_exact() -> None:
    assert split_count(6, {"a": 1, "b": 1, "c": 1}) == {"a": 2, "b": 2, "c": 2}
    assert split_count(7, {"a": 2, "b": 1}) == {"a": 5, "b": 2}
    assert split_count(2, {"a": 1, "b": 1, "c": 1}) == {"a": 1, "b": 1, "c": 0}
    for n in range(0, 30):
        assert sum(split_count(n, {"a": 0.3, "b": 1.7, "c": 1}).values()) == n


# --- each strategy's prompt and provenance ----------------------------------------------


def test_mixed_plan_counts_and_keys(strategy_task: Path, seed_file: Path) -> None:
    plan = _plan(strategy_task, seed_file, strategy=list(("zero-shot", "attributes", "few-shot")))
    assert plan.counts() == {
        "billing": {"zero-shot": 2, "attributes": 2, "few-shot": 2},
        "bug": {"zero-shot": 2, "attributes": 2, "few-shot": 2},
    }
    assert len(set(plan.row_keys())) == plan.rows == 12
    assert not plan.drafts and not plan.followups


def test_instructions_reach_every_prompt_of_their_scope(
    strategy_task: Path, seed_file: Path
) -> None:
    plan = _plan(
        strategy_task,
        seed_file,
        strategy=["zero-shot", "few-shot", "contrastive", "attributes", "hierarchical"],
        count=10,
        instructions="Never use the word please.",
    )
    prompts = [(r.label, r.prompt) for r in plan.requests + plan.drafts] + [
        (f.request.label, f.complete("a summary", []).prompt) for f in plan.followups
    ]
    assert len(prompts) == 24  # 20 rows + 4 hierarchical summaries
    for label, prompt in prompts:
        assert "Write in British English." in prompt  # the task file's, for every label
        assert "Never use the word please." in prompt  # the command line's
        assert ("Mention an amount of money." in prompt) == (label == "billing")


def test_attributes_are_drawn_from_the_labels_pools(strategy_task: Path) -> None:
    plan = _plan(strategy_task, strategy="attributes", count=30)
    seen: dict[str, set[str]] = {}
    for r in plan.requests:
        assert r.strategy == "attributes" and r.template == "attributes"
        pools = {"tone", "channel"} | ({"severity"} if r.label == "bug" else set())
        assert set(r.attributes) == pools
        for name, value in r.attributes.items():
            assert f"- {name}: {value}" in r.prompt
            seen.setdefault(f"{r.label}.{name}", set()).add(value)
    assert seen["billing.tone"] == {"polite"}  # restricted for billing
    assert seen["bug.tone"] == {"angry", "polite", "confused"}  # 30 draws reach all three
    assert len({json.dumps(r.attributes, sort_keys=True) for r in plan.requests}) > 6


@pytest.mark.parametrize("strategy", ["zero-shot", "few-shot", "attributes"])
def test_rows_record_what_they_were_asked_for(
    strategy_task: Path, seed_file: Path, tmp_path: Path, strategy: str
) -> None:
    _generate(strategy_task, tmp_path / "run", strategy=(strategy,), count=4, seed_data=seed_file)
    rows = pl.read_parquet(tmp_path / "run" / "synthetic.parquet")
    plan = {r.key: r for r in _plan(strategy_task, seed_file, strategy=strategy, count=4).requests}
    assert rows.height == 8
    for row in rows.iter_rows(named=True):
        asked = plan[row["request_key"]]
        assert row["strategy"] == row["template"] == strategy
        assert row["template_hash"] == asked.template_hash
        assert json.loads(row["attributes"]) == asked.attributes
        assert tuple(row["positive_ids"]) == asked.positive_ids
        if strategy == "few-shot":  # few_shot_k = 3; bug has only 2 real examples
            assert len(asked.positive_ids) == (2 if row["label"] == "bug" else 3)
            assert all(i.startswith("real-") for i in asked.positive_ids)
        else:
            assert asked.positive_ids == ()
        assert row["negative_ids"] == [] and row["intermediate"] is None
        assert row["seed"] == asked.seed


def test_attributes_need_pools(task_file: Path) -> None:
    with pytest.raises(TaskError, match=r"needs attribute pools"):
        build_plan(parse_task(task_file.read_text()), PlanSpec(strategy="attributes"))


def test_contrastive_positives_boundary_and_rejects(
    strategy_task: Path, seed_file: Path, tmp_path: Path
) -> None:
    reject = tmp_path / "rejected.csv"
    reject.write_text("text,label\nI hate this,billing\nnothing works,bug\n")
    plan = _plan(
        strategy_task, seed_file, strategy="contrastive", count=8, rejects=read_rejects(reject)
    )
    ids = {t: i for i, t in zip(*read_labeled(seed_file).frame[["id", "text"]], strict=True)}
    first = [r for r in plan.requests if r.label == "billing"]
    second = [f for f in plan.followups if f.request.label == "billing"]
    assert len(first) == 4 and len(second) == 4  # half in each pass
    for r in first:
        assert r.strategy == "contrastive" and len(r.positive_ids) == 2
        anchor, nearest = r.positive_ids
        # the positives are the anchor and its nearest neighbour within the label
        pairs = {
            ids["refund my invoice please"]: ids["charged twice this month"],
            ids["charged twice this month"]: ids["refund my invoice please"],
            ids["change my payment card"]: ids["charged twice this month"],
        }
        assert pairs[anchor] == nearest
        # the boundary negative is the other label's example nearest to the positives
        boundary, rejected = r.negative_ids
        assert boundary == ids["the refund page shows an error"]
        assert '- the refund page shows an error (category "bug")' in r.prompt
        assert rejected.startswith("rej-") and "- I hate this" in r.prompt
        assert "nothing works" not in r.prompt  # rejected for the other label
        assert "already written" not in r.prompt


def _row_calls(engine: FakeEngine) -> list[list[str]]:
    """The engine calls that asked for rows or summaries, not for label checks."""
    return [c for c in engine.calls if not all(k.endswith(CHECK_SUFFIX) for k in c)]


def test_contrastive_second_half_sees_earlier_rows(
    strategy_task: Path, seed_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("localgen.vectors.encoder.default_encoder", lambda: PlantedEncoder())
    engine = FakeEngine()
    _generate(
        strategy_task, tmp_path / "run", engine, strategy=("contrastive",), seed_data=seed_file
    )
    rows = pl.read_parquet(tmp_path / "run" / "synthetic.parquet")
    assert rows.height == 12 and set(rows["strategy"]) == {"contrastive"}
    calls = _row_calls(engine)
    first_keys = set(calls[0])
    assert len(calls) == 2 and len(first_keys) == 6 and len(calls[1]) == 6
    by_id = {r["id"]: r for r in rows.iter_rows(named=True)}
    for row in rows.iter_rows(named=True):
        earlier = [i for i in row["negative_ids"] if i.startswith("syn-")]
        if row["request_key"] in first_keys:
            assert earlier == []
            continue
        assert len(earlier) == 2  # earlier = 2 in the task file
        for i in earlier:  # first-pass rows of the same label
            assert by_id[i]["label"] == row["label"]
            assert by_id[i]["request_key"] in first_keys


def test_hierarchical_two_passes_keep_the_summary(strategy_task: Path, tmp_path: Path) -> None:
    plan = _plan(strategy_task, strategy="hierarchical", count=3)
    assert len(plan.drafts) == len(plan.followups) == 6 and not plan.requests
    for draft in plan.drafts:
        assert draft.key.endswith(SUMMARY_SUFFIX) and draft.template == "hierarchical-summary"
        assert draft.schema.max_chars == 7 * 15  # summary_words = 15 by default
        assert "one-line summary" in draft.prompt
        assert set(draft.attributes) >= {"tone", "channel"}  # pools feed the first pass
    engine = FakeEngine()
    _generate(strategy_task, tmp_path / "run", engine, strategy=("hierarchical",), count=3)
    assert [len(c) for c in _row_calls(engine)] == [6, 6]
    assert all(k.endswith(SUMMARY_SUFFIX) for k in engine.calls[0])
    summaries = dict(pl.read_parquet(tmp_path / "run" / "drafts").select("key", "text").iter_rows())
    rows = pl.read_parquet(tmp_path / "run" / "synthetic.parquet")
    assert rows.height == 6 and set(rows["strategy"]) == {"hierarchical"}
    for row in rows.iter_rows(named=True):
        assert row["intermediate"] == summaries[row["request_key"] + SUMMARY_SUFFIX]
        assert row["template"] == "hierarchical"


def test_failed_summary_fails_its_row_with_the_reason(strategy_task: Path, tmp_path: Path) -> None:
    engine = FakeEngine()
    for _ in range(3):  # the first try and both retries
        engine.enqueue("bug-000001" + SUMMARY_SUFFIX, "not json")
    result = _generate(strategy_task, tmp_path / "run", engine, strategy=("hierarchical",), count=2)
    reasons = {f["key"]: f["reason"] for f in result.failures}
    assert reasons["bug-000001" + SUMMARY_SUFFIX].startswith("not valid JSON")
    assert "produced no valid summary" in reasons["bug-000001"]
    assert result.written == 3 and result.planned == 4


def test_two_pass_run_resumes_to_the_same_rows(
    strategy_task: Path, seed_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("localgen.vectors.encoder.default_encoder", lambda: PlantedEncoder())
    options = {
        "strategy": ("contrastive", "hierarchical", "attributes"),
        "seed_data": seed_file,
        "count": 6,
    }
    _generate(strategy_task, tmp_path / "whole", **options)

    class Dies(FakeEngine):
        def generate(self, requests):  # type: ignore[no-untyped-def]
            # Killed in the second pass, after one row that comes before a contrastive
            # request of the same label: the resumed run must not show it as "earlier".
            second = len(self.calls) == 1
            for i, completion in enumerate(super().generate(requests.take(None)[::-1])):
                if second and i == 1:
                    raise KeyboardInterrupt
                yield completion

    with pytest.raises(KeyboardInterrupt):  # shard_rows=1: every row reaches the disk
        _generate(strategy_task, tmp_path / "cut", Dies(), shard_rows=1, **options)
    engine = FakeEngine()
    result = _generate(strategy_task, tmp_path / "cut", engine, **options)
    # The first pass was complete and one second-pass row was stored: only 5 are left.
    calls = _row_calls(engine)
    assert result.resumed == 7 and len(calls) == 1 and len(calls[0]) == 5
    columns = ["request_key", "id", "text", "negative_ids", "intermediate", "attributes"]
    whole = pl.read_parquet(tmp_path / "whole" / "synthetic.parquet").select(columns)
    cut = pl.read_parquet(tmp_path / "cut" / "synthetic.parquet").select(columns)
    assert cut.height == whole.height == 12
    assert cut.to_dicts() == whole.to_dicts()


# --- balance -----------------------------------------------------------------------------


def test_balance_fills_labels_up_to_the_majority(strategy_task: Path, seed_file: Path) -> None:
    plan = _plan(strategy_task, seed_file, balance="majority")
    assert plan.counts() == {"bug": {"zero-shot": 1}}  # billing has 3 real rows, bug 2
    assert any("'billing' already has 3 real rows" in n for n in plan.notes)
    plan = _plan(strategy_task, seed_file, balance=10)
    assert plan.counts() == {"billing": {"zero-shot": 7}, "bug": {"zero-shot": 8}}
    assert _plan(strategy_task, seed_file, balance=10, count=2).rows == 4  # a count wins


def test_balance_errors(strategy_task: Path, seed_file: Path) -> None:
    with pytest.raises(TaskError, match="--seed-data"):
        _plan(strategy_task, balance="majority")
    with pytest.raises(TaskError, match="nothing to do"):
        _plan(strategy_task, seed_file, balance=2)


# --- rejected rows -------------------------------------------------------------------------


def test_reject_file_of_texts_and_ids(strategy_task: Path, tmp_path: Path) -> None:
    _generate(strategy_task, tmp_path / "run", count=2)
    rows = pl.read_parquet(tmp_path / "run" / "synthetic.parquet")
    first = rows.row(0, named=True)
    reject = tmp_path / "run" / "rejected.txt"
    reject.write_text(f"{first['id']}\n\nToo polite to be real\n")
    got = read_rejects(reject)
    assert [(r.id, r.text, r.label) for r in got] == [
        (first["id"], first["text"], first["label"]),
        (got[1].id, "Too polite to be real", None),
    ]
    assert got[1].id.startswith("rej-")
    reject.write_text("syn-0000000000000000\n")
    with pytest.raises(DataError, match="syn-0000000000000000 is not in"):
        read_rejects(reject)
    reject.write_text("\n \n")
    with pytest.raises(DataError, match="no rejected texts"):
        read_rejects(reject)


def test_earlier_rows_come_from_a_bounded_pool_of_the_first_ones(
    strategy_task: Path, seed_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A large run must not read every stored row to show two: the pool is each label's
    # first EARLIER_POOL first-pass rows, the same in a resumed run.
    monkeypatch.setattr("localgen.vectors.encoder.default_encoder", lambda: PlantedEncoder())
    monkeypatch.setattr("localgen.generation.passes.EARLIER_POOL", 1)
    _generate(
        strategy_task,
        tmp_path / "run",
        FakeEngine(),
        strategy=("contrastive",),
        seed_data=seed_file,
    )
    rows = pl.read_parquet(tmp_path / "run" / "synthetic.parquet")
    key_of = dict(zip(rows["id"], rows["request_key"], strict=True))
    second = rows.filter(pl.col("request_key").str.contains(r"00000[345]$"))
    assert second.height == 6
    for row in second.iter_rows(named=True):
        earlier = [key_of[i] for i in row["negative_ids"] if i.startswith("syn-")]
        assert earlier == [f"{row['label']}-000000"]


# --- from-documents ----------------------------------------------------------------------

DOCUMENTS = [
    "Dear team, the quarterly statement for the Harbour Cafe account lists a late fee.",
    "Good morning, our kitchen tablet shows a blank screen after the latest update.",
    "Hi, could the weekly report include the tips per waiter?",
]


@pytest.fixture
def documents_file(tmp_path: Path) -> Path:
    path = tmp_path / "inbox.csv"
    pl.DataFrame({"text": DOCUMENTS + [""]}).write_csv(path)  # an empty one is dropped
    return path


def _documents(path: Path) -> pl.DataFrame:
    from localgen.data import read_documents

    return read_documents(path)[0]


def test_from_documents_shows_one_document_and_records_it(
    strategy_task: Path, seed_file: Path, documents_file: Path
) -> None:
    documents = _documents(documents_file)
    plan = _plan(strategy_task, seed_file, strategy="from-documents", documents=documents)
    ids = dict(zip(documents["id"], documents["text"], strict=True))
    requests = plan.requests
    assert len(requests) == 12 and {r.strategy for r in requests} == {"from-documents"}
    for r in requests:
        source, *examples = r.positive_ids
        assert ids[source] in r.prompt  # the document shown is the one recorded first
        assert sum(text in r.prompt for text in DOCUMENTS) == 1
        assert len(examples) == min(3, 3 if r.label == "billing" else 2)  # few_shot_k
        assert all(e.startswith("real-") for e in examples)
    # A document inspires rows of every label, whatever its own: each label sees several.
    for label in ("billing", "bug"):
        shown = {r.positive_ids[0] for r in requests if r.label == label}
        assert len(shown) >= 2
    again = _plan(strategy_task, seed_file, strategy="from-documents", documents=documents)
    assert [r.prompt for r in again.requests] == [r.prompt for r in requests]
    assert again.fingerprint == plan.fingerprint
    fewer = _plan(strategy_task, seed_file, strategy="from-documents", documents=documents[:2])
    assert fewer.fingerprint != plan.fingerprint  # the documents are part of the plan


def test_from_documents_needs_documents_and_unused_documents_change_nothing(
    strategy_task: Path, seed_file: Path, documents_file: Path
) -> None:
    with pytest.raises(TaskError, match="from-documents strategy needs the user's documents"):
        _plan(strategy_task, seed_file, strategy="from-documents")
    documents = _documents(documents_file)
    plain = _plan(strategy_task, seed_file, strategy="few-shot")
    unused = _plan(strategy_task, seed_file, strategy="few-shot", documents=documents)
    assert unused.fingerprint == plain.fingerprint  # earlier runs resume as they were
    assert any("documents are shown only by the from-documents" in n for n in unused.notes)
    # Without real examples it still runs: the document and the label's description.
    alone = _plan(strategy_task, None, strategy="from-documents", documents=documents)
    assert all(len(r.positive_ids) == 1 for r in alone.requests)
    assert all("Real examples" not in r.prompt for r in alone.requests)


def test_a_long_document_is_cut_and_the_prompt_fits(
    strategy_task: Path, seed_file: Path, tmp_path: Path
) -> None:
    from localgen.planning.fit import CUT_MARK, PromptFit

    path = tmp_path / "long.txt"
    path.write_text(" ".join(f"word{i}" for i in range(3_000)) + "\n")
    fit = PromptFit(lambda text: len(text.split()), context=400)
    plan = _plan(
        strategy_task, seed_file, strategy="from-documents", documents=_documents(path), fit=fit
    )
    for r in plan.requests:
        assert "word0 word1" in r.prompt and "word2999" not in r.prompt
        assert CUT_MARK in r.prompt and len(r.prompt.split()) + r.max_tokens <= 400


def test_generating_from_documents_end_to_end_and_leakage_against_them(
    strategy_task: Path, seed_file: Path, documents_file: Path, tmp_path: Path
) -> None:
    from localgen.config import CurateConfig
    from localgen.curation.curate import curate
    from tests.helpers import BagOfWords

    copied = "the quarterly statement for the Harbour Cafe account lists a late fee"
    engine = FakeEngine()
    row = {"text": copied.capitalize() + ".", "label": "billing"}  # copies 12 words
    engine.enqueue("billing-000000", json.dumps(row))
    out = tmp_path / "run"
    result = _generate(
        strategy_task,
        out,
        engine,
        strategy=("from-documents",),
        seed_data=seed_file,
        documents=documents_file,
    )
    rows = pl.read_parquet(result.outputs[0])
    assert set(rows["strategy"]) == {"from-documents"} and rows.height == 12
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["documents"] == {"path": str(documents_file), "text_column": "text"}
    summary = curate(CurateConfig(out, leak_words=8), BagOfWords())
    leaks = [
        f
        for r in summary["rows"]
        for f in r["findings"]
        if f["rule"] == "leakage" and "a document" in f["detail"]
    ]
    assert len(leaks) == 1 and leaks[0]["score"] == 12
    assert leaks[0]["match"].startswith("doc-")


# --- rewrite ---------------------------------------------------------------------------


def test_rewrite_shows_one_real_row_of_its_label_and_they_take_turns(
    strategy_task: Path, seed_file: Path
) -> None:
    plan = _plan(strategy_task, seed_file, strategy="rewrite", count=6)
    real = read_labeled(seed_file).frame
    text_of = dict(zip(real["id"], real["text"], strict=True))
    label_of = dict(zip(real["id"], real["label"], strict=True))
    for label, own in (("billing", 3), ("bug", 2)):
        requests = [r for r in plan.requests if r.label == label]
        assert len(requests) == 6 and {r.strategy for r in requests} == {"rewrite"}
        for r in requests:
            (source,) = r.positive_ids  # one real row, recorded as the row's source
            assert label_of[source] == label and text_of[source] in r.prompt
            others = [t for i, t in text_of.items() if i != source]
            assert not any(f'"""\n{t}\n"""' in r.prompt for t in others)
        sources = [r.positive_ids[0] for r in requests]
        # Each of the label's real rows is the source equally often (6 rows, 3 or 2 real).
        assert sorted(sources.count(s) for s in set(sources)) == [6 // own] * own
    again = _plan(strategy_task, seed_file, strategy="rewrite", count=6)
    assert [r.prompt for r in again.requests] == [r.prompt for r in plan.requests]


def test_rewrite_needs_real_rows_and_a_long_one_is_cut_not_dropped(
    strategy_task: Path, seed_file: Path, tmp_path: Path
) -> None:
    from localgen.planning.fit import CUT_MARK, PromptFit

    with pytest.raises(TaskError, match="rewrite strategy needs real examples"):
        _plan(strategy_task, None, strategy="rewrite")
    long = " ".join(f"word{i}" for i in range(3_000))
    path = tmp_path / "long.csv"
    path.write_text(f"text,label\n{long},billing\nthe app freezes,bug\n")
    fit = PromptFit(lambda text: len(text.split()), context=400)
    plan = _plan(strategy_task, path, strategy="rewrite", count=2, fit=fit)
    billing = [r for r in plan.requests if r.label == "billing"]
    for r in billing:
        assert len(r.positive_ids) == 1 and "word0 word1" in r.prompt
        assert CUT_MARK in r.prompt and "word2999" not in r.prompt
        assert len(r.prompt.split()) + r.max_tokens <= 400


def test_a_rewrite_that_copies_its_source_is_dropped_by_curation(
    strategy_task: Path, seed_file: Path, tmp_path: Path
) -> None:
    from localgen.config import CurateConfig
    from localgen.curation.curate import curate
    from tests.helpers import BagOfWords

    long_seed = tmp_path / "seed.csv"
    source = "my invoice for march shows the same charge twice and I need a refund of it"
    long_seed.write_text(f"text,label\n{source},billing\napp crashes on start,bug\n")
    engine = FakeEngine()
    engine.enqueue("billing-000000", json.dumps({"text": source.capitalize(), "label": "billing"}))
    out = tmp_path / "run"
    result = _generate(
        strategy_task, out, engine, strategy=("rewrite",), count=2, seed_data=long_seed
    )
    rows = pl.read_parquet(result.outputs[0])
    assert set(rows["strategy"]) == {"rewrite"} and rows.height == 4
    assert all(len(ids) == 1 for ids in rows["positive_ids"])
    summary = curate(CurateConfig(out, leak_words=8), BagOfWords())
    leaks = [f for r in summary["rows"] for f in r["findings"] if f["rule"] == "leakage"]
    assert len(leaks) == 1 and leaks[0]["score"] == 16
