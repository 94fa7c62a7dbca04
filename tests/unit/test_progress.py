"""The progress line in a log file: a line at each tenth of the work, whatever the step."""

import io

from localgen.progress import Progress


def test_a_log_gets_a_line_at_each_tenth_passed_even_in_uneven_steps() -> None:
    log = io.StringIO()  # not a terminal
    progress = Progress(100, stream=log, tokens=False)
    for _ in range(14):
        progress.advance(7)  # 98 rows: passes 10, 20, ... 90 once each, never lands on them
    progress.advance(2)
    lines = log.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == [
        "14/100", "21/100", "35/100", "42/100", "56/100", "63/100", "70/100", "84/100",
        "91/100", "100/100",
    ]  # fmt: skip


def test_a_disabled_progress_writes_nothing() -> None:
    log = io.StringIO()
    progress = Progress(10, stream=log, enabled=False)
    progress.advance(10)
    progress.close()
    assert log.getvalue() == ""
