"""Curation rules against planted duplicates, copied passages, test rows and wrong labels."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from localgen.config import CurateConfig
from localgen.curation import checks
from localgen.curation.curate import curate
from localgen.curation.similarity import copied_spans, greedy_duplicates, longest_common_span
from localgen.errors import DataError
from localgen.generation.store import CURATED, CURATION
from localgen.text import normalize, words
from localgen.vectors.linear import cross_val_accuracy, fit_linear
from tests.helpers import REAL, BagOfWords, make_run, write_csv

EVAL = [("The export button crashes the whole application every single time", "access")]


def real_id(text: str, label: str) -> str:
    from localgen.data import content_id

    return content_id(text, label, "real-")


def test_normalize_and_spans_by_hand() -> None:
    assert normalize("  Refund my INVOICE, please!! ") == normalize("refund my invoice please")
    assert normalize("ﬁle") == "file"  # NFKC: the ligature is two letters
    assert longest_common_span(["a", "b", "c", "d", "e"], ["x", "b", "c", "d", "y"]) == 3
    assert longest_common_span(["a", "b"], ["c", "d"]) == 0
    spans = copied_spans(
        [["z", "a", "b", "c", "d", "q"], ["a", "b", "z", "c", "d"]],
        [["a", "b", "c", "d"], ["q", "q"]],
        3,
    )
    assert spans == {0: (0, 4)}  # the second text has no run of 3


def test_greedy_duplicates_keep_the_first_of_each_group() -> None:
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    v = np.array([e1, e1, e2, e1, e2], dtype=np.float32)
    assert greedy_duplicates(v, 0.95) == {1: (0, 1.0), 3: (0, 1.0), 4: (2, 1.0)}
    # A chain a~b, b~c with a!~c: b goes, so c is compared with a only and stays.
    a, b, c = [1.0, 0.0], [0.8, 0.6], [0.28, 0.96]
    chain = np.array([a, b, c], dtype=np.float32)
    assert greedy_duplicates(chain, 0.79) == {1: (0, pytest.approx(0.8))}


def test_linear_head_learns_a_separable_task() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(2, 0.3, (20, 5)), rng.normal(-2, 0.3, (20, 5))])
    labels = ["a"] * 20 + ["b"] * 20
    head = fit_linear(x, labels)
    assert head.predict(x) == labels
    assert np.allclose(head.proba(x).sum(axis=1), 1.0)
    assert cross_val_accuracy(x, labels, folds=4) == 1.0
    with pytest.raises(DataError, match="at least two labels"):
        fit_linear(x[:3], ["a"] * 3)


def test_every_rule_catches_what_was_planted(tmp_path: Path) -> None:
    leaked = REAL[0][0]  # 16 words; the row below copies 12 of them in a row
    rows = [
        {"text": "My card was charged for a plan I never ordered last week", "label": "billing"},
        {"text": "my CARD was charged, for a plan I never ordered last week!", "label": "billing"},
        {"text": "last week I never ordered a plan my card was charged for", "label": "billing"},
        {
            "text": "Hello, twice for the March invoice and need a refund of the second one",
            "label": "billing",
            "positive_ids": [real_id(*REAL[0])],
        },
        {"text": "the export button crashes the whole application every time", "label": "access"},
        {"text": "Refund?", "label": "billing"},
        {"text": "I cannot sign in, the password reset link and login fail", "label": "billing"},
        {"text": "Locked out of my account after the login attempts", "label": "access"},
    ]
    run = make_run(tmp_path, rows)
    raw_before = (run / "synthetic.parquet").read_bytes()
    config = CurateConfig(
        run,
        real=write_csv(tmp_path / "real.csv", REAL),
        eval=write_csv(tmp_path / "eval.csv", EVAL),
        leak_words=8,
    )
    summary = curate(config, BagOfWords())

    by_id = {r["id"]: r for r in summary["rows"]}

    def rules_of(i: int) -> list[str]:
        return [f["rule"] for f in by_id.get(f"syn-{i:016x}", {"findings": []})["findings"]]

    assert rules_of(0) == []
    assert rules_of(1)[0] == "exact-duplicate"
    assert by_id[f"syn-{1:016x}"]["findings"][0]["match"] == f"syn-{0:016x}"
    assert rules_of(2) == ["near-duplicate"]  # same words, other order: cosine 1
    assert rules_of(3)[0] == "leakage"
    leak = by_id[f"syn-{3:016x}"]["findings"][0]
    assert leak["match"] == real_id(*REAL[0]) and leak["score"] == 12
    assert "(shown to the model)" in leak["detail"]
    assert " ".join(words(rows[3]["text"])[1:13]) in " ".join(words(leaked))
    assert "contamination" in rules_of(4)
    assert rules_of(5)[0] == "length"
    assert rules_of(6) == ["label-fidelity"]  # an access message labelled billing
    assert by_id[f"syn-{6:016x}"]["dropped_by"] is None  # flagged, kept by default
    assert rules_of(7) == []

    kept = pl.read_parquet(run / CURATED)
    assert kept["id"].to_list() == [f"syn-{i:016x}" for i in (0, 6, 7)]
    assert kept.filter(pl.col("id") == f"syn-{6:016x}")["judge_label"].item() == "access"
    assert (run / "synthetic.parquet").read_bytes() == raw_before  # raw rows untouched
    on_disk = json.loads((run / CURATION).read_text())
    assert on_disk["counts"] == summary["counts"]
    assert summary["counts"] == {
        "input": 8,
        "kept": 3,
        "dropped": 5,
        "per_label": {"access": {"input": 2, "kept": 1}, "billing": {"input": 6, "kept": 2}},
    }
    rules = summary["rules"]
    assert sum(r["dropped"] for r in rules.values() if r["enabled"]) == 5
    assert rules["leakage"]["shown_to_model"] == 1 and rules["leakage"]["min_span_words"] == 8
    assert rules["label-fidelity"]["dropped"] == 0 and rules["label-fidelity"]["flagged"] == 1


def test_rules_can_be_switched_off_and_mislabeled_rows_dropped(tmp_path: Path) -> None:
    rows = [
        {"text": "Refund?", "label": "billing"},
        {"text": "I cannot sign in, the password reset link and login fail", "label": "billing"},
        {"text": "Please refund the charge on my invoice this month", "label": "billing"},
    ]
    run = make_run(tmp_path, rows)
    real = write_csv(tmp_path / "real.csv", REAL)
    summary = curate(
        CurateConfig(run, real=real, skip=frozenset({"length"}), mislabeled="drop"), BagOfWords()
    )
    assert summary["rules"]["length"] == {"enabled": False, "reason": "switched off (--skip)"}
    assert summary["rules"]["label-fidelity"]["dropped"] == 1
    assert pl.read_parquet(run / CURATED)["text"].to_list() == [rows[0]["text"], rows[2]["text"]]


def test_without_real_or_eval_data_those_rules_say_why(tmp_path: Path) -> None:
    run = make_run(tmp_path, [{"text": "one two three four", "label": "billing"}] * 2)
    summary = curate(CurateConfig(run), BagOfWords())
    for rule in ("leakage", "contamination", "label-fidelity"):
        assert summary["rules"][rule]["enabled"] is False
        assert summary["rules"][rule]["reason"]
    assert summary["counts"]["kept"] == 1  # the second is an exact duplicate


def test_real_data_from_the_runs_seed_data_and_label_check(tmp_path: Path) -> None:
    run = make_run(tmp_path, [{"text": "Please refund the extra charge now", "label": "billing"}])
    seed = write_csv(tmp_path / "seed.csv", REAL)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["seed_data"] = {"path": str(seed), "text_column": "text", "label_column": "label"}
    (run / "manifest.json").write_text(json.dumps(manifest))
    summary = curate(CurateConfig(run), BagOfWords())
    assert summary["inputs"]["real"] == {"path": str(seed), "rows": len(REAL)}
    bad = write_csv(tmp_path / "bad.csv", [*REAL, ("hello", "refunds")])
    with pytest.raises(DataError, match="labels not in the task file: 'refunds'"):
        curate(CurateConfig(run, real=bad), BagOfWords())


def test_a_dependency_dialling_out_is_refused_and_recorded(tmp_path: Path) -> None:
    import socket

    class Chatty(BagOfWords):
        def encode(self, texts: Sequence[str]) -> np.ndarray:
            # What a library "checking for updates" does, swallowing the failure.
            with contextlib.suppress(OSError):
                socket.create_connection(("203.0.113.7", 443), timeout=5)
            return super().encode(texts)

    run = make_run(tmp_path, [{"text": "Please refund the extra charge now", "label": "billing"}])
    summary = curate(CurateConfig(run), Chatty())
    assert [a.split()[0] for a in summary["egress"]["blocked"]] == ["203.0.113.7:443"]
    on_disk = json.loads((run / CURATION).read_text())
    assert on_disk["egress"]["blocked_attempts"] == 1


def test_row_vectors_are_cached_per_id_and_a_damaged_cache_is_ignored(tmp_path: Path) -> None:
    from localgen.vectors.encoder import cache_file, encode_cached

    class Counting(BagOfWords):
        seen: list[str] = []

        def encode(self, texts: Sequence[str]) -> np.ndarray:
            self.seen.extend(texts)
            return super().encode(texts)

    encoder = Counting()
    cache = cache_file(tmp_path, encoder)
    first = encode_cached(encoder, ["a", "b"], ["refund me", "log me in"], cache)
    again = encode_cached(encoder, ["b", "c", "a"], ["log me in", "it crashed", "refund me"], cache)
    assert encoder.seen == ["refund me", "log me in", "it crashed"]  # each text once
    assert np.allclose(again[[2, 0]], first)
    assert np.allclose(again, BagOfWords().encode(["log me in", "it crashed", "refund me"]))
    assert np.load(cache, mmap_mode="r").shape[0] == 3  # grown, not rewritten per call
    cache.write_bytes(b"not an npy file")
    encode_cached(encoder, ["a"], ["refund me"], cache)
    assert encoder.seen[-1] == "refund me"
    with cache.with_suffix(".ids.npy").open("wb") as f:  # killed between the two files
        np.save(f, np.array([b"a", b"b"]))
    encode_cached(encoder, ["a"], ["refund me"], cache)
    assert encoder.seen[-2:] == ["refund me", "refund me"]  # a pair that disagrees is unused
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_long_embedding_shows_progress_and_gives_the_same_vectors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from localgen.vectors import encoder as vectors

    monkeypatch.setattr(vectors, "EMBED_CHUNK", 2)
    texts = ["refund me", "log me in", "it crashed", "billed twice", "reset link"]
    ids = [str(i) for i in range(5)]
    quiet = vectors.encode_cached(BagOfWords(), ids, texts, tmp_path / "a.npy")
    assert capsys.readouterr().err == ""
    told = vectors.encode_cached(BagOfWords(), ids, texts, tmp_path / "b.npy", say=print)
    assert np.allclose(told, quiet)
    assert "5/5 rows" in capsys.readouterr().err  # three calls of two, the last line at 5


def test_a_killed_embedding_keeps_the_parts_it_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from localgen.vectors import encoder as vectors

    monkeypatch.setattr(vectors, "CACHE_CHUNK", 2)  # parts of 2, then as large as the cache
    monkeypatch.setattr(vectors, "EMBED_CHUNK", 1)
    texts = [f"ticket number {i}" for i in range(9)]
    ids = [f"id-{i}" for i in range(9)]

    class Killed(BagOfWords):
        seen: list[str] = []

        def encode(self, texts: Sequence[str]) -> np.ndarray:
            if len(self.seen) == 5:
                raise KeyboardInterrupt  # killed while embedding the third part (rows 4-7)
            self.seen.extend(texts)
            return super().encode(texts)

    cache = tmp_path / "cache.npy"
    with pytest.raises(KeyboardInterrupt):
        vectors.encode_cached(Killed(), ids, texts, cache)
    assert np.load(cache, mmap_mode="r").shape[0] == 4  # parts of 2 and 2 saved
    Killed.seen = []
    again = vectors.encode_cached(Killed(), ids, texts, cache)
    assert Killed.seen == texts[4:]  # only what was not saved, in parts of 4 then 1
    assert np.allclose(again, BagOfWords().encode(texts))
    assert np.load(cache, mmap_mode="r").shape[0] == 9


def test_label_consistency_drops_what_the_model_itself_labels_otherwise(tmp_path: Path) -> None:
    rows = [
        {"text": "Please refund the extra charge on my card", "label": "billing"},
        {"text": "The reset link never arrives in my inbox", "label": "billing"},
        {"text": "I was billed twice for the same invoice", "label": "billing"},
        {"text": "Locked out after three failed login attempts", "label": "access"},
    ]
    answers = ["billing", "access", None, "access"]  # None: the check gave no answer
    run = make_run(tmp_path, [r | {"check_label": a} for r, a in zip(rows, answers, strict=True)])
    summary = curate(CurateConfig(run, inconsistent="drop"), BagOfWords())
    rule = summary["rules"]["label-consistency"]
    assert rule["enabled"] and rule["flagged"] == rule["dropped"] == 1
    assert rule["agreement_per_label"] == {"access": 1.0, "billing": 0.5}
    assert rule["unchecked"] == 1
    kept = pl.read_parquet(run / CURATED)["text"].to_list()
    assert kept == [rows[0]["text"], rows[2]["text"], rows[3]["text"]]
    flagged = curate(CurateConfig(run), BagOfWords())  # the default: flagged, kept
    assert flagged["rules"]["label-consistency"]["dropped"] == 0
    assert flagged["counts"]["kept"] == 4
    # A run without the check says why the rule did not run.
    (tmp_path / "plain").mkdir()
    other = make_run(tmp_path / "plain", rows)
    reason = curate(CurateConfig(other), BagOfWords())["rules"]["label-consistency"]["reason"]
    assert "no label check" in reason


def test_on_topic_keeps_the_most_likely_share_of_each_label(tmp_path: Path) -> None:
    texts = [f"message number {n} about the invoice and a refund" for n in range(6)]
    likelihood = [-0.5, -2.5, -1.0, -3.0, -0.2, -1.5]
    labels = ["billing", "billing", "billing", "access", "access", "access"]
    rows = [
        {"text": t, "label": lab, "mean_logprob": lp}
        for t, lab, lp in zip(texts, labels, likelihood, strict=True)
    ]
    run = make_run(tmp_path, rows)
    summary = curate(CurateConfig(run, on_topic_share=0.67, skip=frozenset({"near-duplicate"})))
    rule = summary["rules"]["on-topic"]
    assert rule["dropped"] == 2 and rule["cutoff_per_label"] == {"access": -1.5, "billing": -1.0}
    kept = pl.read_parquet(run / CURATED)["text"].to_list()
    assert kept == [texts[0], texts[2], texts[4], texts[5]]  # the least likely of each: gone
    keep_all = CurateConfig(run, on_topic_share=1.0)
    assert curate(keep_all, BagOfWords())["rules"]["on-topic"]["enabled"] is False


def test_the_judge_drops_only_when_confident_and_trusted(tmp_path: Path) -> None:
    rows = [
        {"text": "I cannot sign in, the password reset link and login fail", "label": "billing"},
        {"text": "Please refund the charge on my invoice this month", "label": "billing"},
    ]
    run = make_run(tmp_path, rows)
    real = write_csv(tmp_path / "real.csv", REAL)
    base = CurateConfig(run, real=real, mislabeled="confident", judge_confidence=0.0)
    trusting = curate(replace(base, judge_accuracy=0.0), BagOfWords())
    assert trusting["rules"]["label-fidelity"]["trusted"] is True
    assert trusting["rules"]["label-fidelity"]["dropped"] == 1
    sceptical = curate(replace(base, judge_accuracy=1.01), BagOfWords())  # never trusted
    assert sceptical["rules"]["label-fidelity"]["trusted"] is False
    assert sceptical["rules"]["label-fidelity"]["flagged"] == 1
    assert sceptical["rules"]["label-fidelity"]["dropped"] == 0
    unsure = curate(replace(base, judge_accuracy=0.0, judge_confidence=1.0), BagOfWords())
    assert unsure["rules"]["label-fidelity"]["dropped"] == 0


def test_above_the_exact_limit_near_duplicates_come_from_the_index(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The approximate path (faiss HNSW) finds the planted pairs the exact blocks find,
    gives the same pairs run to run, and curation records which search it used."""
    from localgen.vectors import neighbours

    rng = np.random.default_rng(3)
    base = rng.standard_normal((300, 64)).astype(np.float32)
    copies = base[:40] + 0.01 * rng.standard_normal((40, 64)).astype(np.float32)
    x = np.concatenate([base, copies])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    exact = list(neighbours.earlier_pairs(x, 0.95))
    assert neighbours.pair_search(len(x)) == "exact"
    monkeypatch.setattr(neighbours, "EXACT_PAIRS_UP_TO", 100)
    approximate = list(neighbours.earlier_pairs(x, 0.95))
    assert neighbours.pair_search(len(x)).startswith("approximate (faiss HNSW")
    assert {(i, j) for i, j, _ in approximate} == {(i, j) for i, j, _ in exact}
    assert {(300 + k, k) for k in range(40)} <= {(i, j) for i, j, _ in approximate}
    assert [i for i, _, _ in approximate] == sorted(i for i, _, _ in approximate)
    assert approximate == list(neighbours.earlier_pairs(x, 0.95))  # the same pairs again
    result = checks.near_duplicate(
        x, [f"r{i}" for i in range(len(x))], None, x[:0], CurateConfig(Path("."))
    )
    assert result.info["search"].startswith("approximate") and result.info["within_synthetic"] == 40


def test_keep_drops_a_labels_rows_beyond_the_first_n_that_pass(tmp_path: Path) -> None:
    texts = [f"message number {n} about the invoice and a refund" for n in range(7)]
    labels = ["billing", "billing", "billing", "billing", "access", "access", "billing"]
    rows = [{"text": t, "label": lab} for t, lab in zip(texts, labels, strict=True)]
    rows[1]["text"] = "too short"  # length drops it: it does not count towards keep
    run = make_run(tmp_path, rows)
    off = frozenset({"near-duplicate"})
    summary = curate(CurateConfig(run, keep=2, skip=off), BagOfWords())
    rule = summary["rules"]["surplus"]
    assert rule["enabled"] and rule["dropped"] == 2 and rule["keep_per_label"] == 2
    assert rule["passed_per_label"] == {"access": 2, "billing": 4}
    assert summary["counts"]["per_label"]["billing"] == {"input": 5, "kept": 2}
    kept = pl.read_parquet(run / CURATED)["text"].to_list()
    assert kept == [texts[0], texts[2], texts[4], texts[5]]  # the first two of each
    by_row = {r["id"]: r["dropped_by"] for r in summary["rows"]}
    assert by_row == {
        "syn-0000000000000001": "length",
        "syn-0000000000000003": "surplus",
        "syn-0000000000000006": "surplus",
    }
    without = curate(CurateConfig(run, skip=off), BagOfWords())["rules"]["surplus"]
    assert without["enabled"] is False and "no --keep" in without["reason"]


def test_markup_and_placeholders_the_labels_real_rows_do_not_have(tmp_path: Path) -> None:
    real = write_csv(
        tmp_path / "real.csv",
        [
            ("WIN a prize now at www.prizes-today.com, reply STOP to end", "spam"),
            ("Free entry to the cup final, text WIN to 80086", "spam"),
            ("Are we still meeting at the station at six?", "ham"),
            ("Sorry, running late, see you in ten minutes", "ham"),
        ],
    )
    from localgen.data import read_labeled

    rows = [
        ("Claim your free phone at www.free-phones.com today", "spam"),  # as its real rows
        ("See you at www.free-phones.com after work", "ham"),  # no ham row has a URL
        ("Hey {{Your Custom Chat Text}} see you later", "ham"),
        ("Dear [<user_name_here>], are you coming tonight?", "ham"),
        ("[A:2022,04:20,2012,12:00.00,5:15", "ham"),  # opens a bracket it never closes
        ("Lunch at one?<br>Let me know", "ham"),
        ("Lunch at one &#62; let me know", "ham"),
        ("Please open interestm.py before the meeting", "ham"),
        ("Match the topic, length and tone of the examples please", "ham"),
        ("Running late again, save me a seat at the back", "ham"),  # clean
    ]
    prompt = ["Match the topic, length and tone of the examples, but do not copy them."]
    config = CurateConfig(tmp_path, echo_words=6)
    texts = [t for t, _ in rows]
    result = checks.markup(
        texts,
        [words(t) for t in texts],
        [lab for _, lab in rows],
        read_labeled(real),
        prompt,
        config,
    )
    assert sorted(result.findings) == [1, 2, 3, 4, 5, 6, 7, 8]
    details = {i: f.detail for i, f in result.findings.items()}
    assert "a URL" in details[1] and "template braces" in details[2]
    assert "a bracketed slot" in details[3] and "a bracketed slot" in details[4]
    assert "a tag" in details[5] and "an HTML entity" in details[6]
    assert "a file name" in details[7] and "repeats the prompt" in details[8]
    assert result.info["found"]["a bracketed slot"] == 2
    # Without real rows every kind counts, the spam row's URL too.
    alone = checks.markup([rows[0][0]], [words(rows[0][0])], ["spam"], None, [], config)
    assert list(alone.findings) == [0]


def test_curation_drops_rows_that_repeat_the_templates_wording(tmp_path: Path) -> None:
    rows = [
        {"text": "Use at most 40 words. Write only the text itself, thanks", "label": "billing"},
        {"text": "Please refund the second charge on my March invoice", "label": "billing"},
    ]
    run = make_run(tmp_path, rows)
    frame = pl.read_parquet(run / "synthetic.parquet")
    frame.with_columns(pl.lit("few-shot").alias("template")).write_parquet(
        run / "synthetic.parquet"
    )
    summary = curate(CurateConfig(run, skip=frozenset({"label-fidelity"})), BagOfWords())
    by_id = {r["id"]: r for r in summary["rows"]}
    echo = by_id[f"syn-{0:016x}"]
    assert echo["dropped_by"] == "markup"
    assert "write only the text itself" in echo["findings"][0]["detail"]
    assert by_id.get(f"syn-{1:016x}", {"dropped_by": None})["dropped_by"] is None
