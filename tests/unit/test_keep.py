from pathlib import Path

from localgen.config import KEEP_ROUNDS, GenerateConfig, RunConfig
from localgen.jobs.keep import next_round


def config(keep: int, budget: float = 4.0) -> RunConfig:
    return RunConfig(
        GenerateConfig(Path("t.toml"), Path("out")), Path("test.csv"), keep=keep, keep_budget=budget
    )


def test_a_round_asks_short_labels_for_what_they_miss_at_their_pass_rate() -> None:
    planned = {"a": 10, "b": 10, "c": 10}
    extra, outcome = next_round(planned, {"a": 12, "b": 5, "c": 0}, config(10), 0)
    # b: 5 missing at 5 of 10 passing, with the 10% margin; c: none passed, rate 0.1 assumed,
    # capped by the budget of 40 rows planned in all.
    assert extra == {"b": 11, "c": 30}
    assert outcome["short"] == 2 and outcome["rounds"] == 1 and outcome["notes"] == []
    assert outcome["per_label"]["a"] == {"planned": 10, "passed": 12}


def test_the_rounds_stop_at_the_budget_at_a_stall_and_after_the_last_round() -> None:
    spent, notes = next_round({"a": 40, "b": 20}, {"a": 7, "b": 10}, config(10), 1)
    assert spent == {} and len(notes["notes"]) == 1
    assert "label 'a' has 7 of 10 rows after 40 planned" in notes["notes"][0]
    assert "budget (40 rows" in notes["notes"][0]
    stalled, notes = next_round({"a": 20}, {"a": 7}, config(10), 1, before={"a": 7})
    assert stalled == {} and "added no row" in notes["notes"][0]
    grows, _ = next_round({"a": 20}, {"a": 8}, config(10), 1, before={"a": 7})
    assert grows == {"a": 6}  # 2 missing at 8 of 20 passing, with the margin
    last, notes = next_round({"a": 20}, {"a": 8}, config(10), KEEP_ROUNDS - 1, before={"a": 7})
    assert last == {} and f"the last of {KEEP_ROUNDS} rounds" in notes["notes"][0]
    done, notes = next_round({"a": 20}, {"a": 10}, config(10), 1)
    assert done == {} and notes["notes"] == [] and notes["short"] == 0


def test_a_label_out_of_budget_says_so_even_when_the_round_stalled() -> None:
    extra, outcome = next_round(
        {"a": 40, "b": 20}, {"a": 7, "b": 5}, config(10), 2, {"a": 7, "b": 5}
    )
    assert extra == {}
    budget, stall = outcome["notes"]
    assert "label 'a'" in budget and "budget" in budget
    assert "label 'b'" in stall and "added no row" in stall
