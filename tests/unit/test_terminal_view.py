"""The terminal view of a run: a run for students shows each check's verdict alone (the ladder
stays), the option is recorded in report.json; piped output is not wrapped at 80 columns; long
waits are shown as they go (a line about every period when piped)."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from lab.core import Lab
from lab.errors import WaitTimeout
from lab.report import show, student_mode, terminal_console
from lab.waiting import WaitView

RUN = Path(__file__).resolve().parents[2] / "tests" / "data" / "runs" / "lost-ack"


@pytest.fixture
def report() -> dict:
    with gzip.open(RUN / "report.json.gz", "rt") as f:
        return json.load(f)


def shown(report: dict, **kw) -> str:
    out = io.StringIO()
    show(report, Console(file=out, width=200, soft_wrap=True), **kw)
    return out.getvalue()


def test_a_run_for_students_shows_the_verdicts_and_the_ladder_only(report):
    assert report["options"]["student"] is True and student_mode(report)     # recorded by `run --student`
    text = shown(report)
    assert "✕ lost" in text and "server: GONE" in text                       # the ladder stays
    for c in report["checks"]:
        assert c["name"] in text
        assert c["observed"] not in text and c["expected"] not in text and c["citation"] not in text
    assert "expected" not in text and "observed" not in text and "rule " not in text
    assert "verdict: PASS" in text


def test_a_run_without_the_option_shows_expected_observed_and_rule(report):
    report["options"]["student"] = False
    text = shown(report)
    for c in report["checks"]:
        assert c["observed"] in text and c["citation"] in text
    assert shown(report, student=True).count("expected") == 0


def test_piped_output_is_not_wrapped_at_80_columns(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    out = io.StringIO()
    console = terminal_console(out)
    assert not console.is_terminal and console.width == 120
    line = "observed " + " ".join(f"word{i}" for i in range(60))             # ~400 characters
    console.print(line)
    assert out.getvalue() == line + "\n"


def test_the_runs_view_piped_keeps_each_line_whole(report, capsys, monkeypatch):
    """A CI log: rich would fold every check's long observed line at 80 columns, mid-phrase."""
    monkeypatch.delenv("COLUMNS", raising=False)
    report["options"]["student"] = False
    show(report)
    out = capsys.readouterr().out
    long = [c["observed"] for c in report["checks"] if len(c["observed"]) > 80]
    assert long and all(text in out for text in long)


class Ticks:
    """A wall clock that moves one second each time it is read."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def polls(n: int):
    """A predicate true on its n-th call."""
    calls = iter(range(1, 10_000))
    return lambda: next(calls) >= n


def test_a_long_wait_prints_a_line_every_period_when_piped():
    out = io.StringIO()
    clock = Ticks()
    lab = Lab(waiting=WaitView(out, every_s=10, quiet_s=5, live=False, clock=clock))
    due = (clock.now + 30, clock.now + 45)
    lab.wait_for("A's TIME_WAIT to expire (60 s)", polls(60), timeout_s=600, interval_s=0, due=due)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("waiting up to 600 s for A's TIME_WAIT to expire (60 s): due in ")
    progress = [line for line in lines if line.startswith("... ")]
    assert 3 <= len(progress) <= 12                                          # one per 10 ticks of ~60
    assert any("due now" in line for line in progress) and any("later than due" in line for line in progress)
    assert lines[-1].startswith("A's TIME_WAIT to expire (60 s): came after ")
    assert "\x1b[" not in out.getvalue()                                     # no terminal codes in a log


def test_a_short_wait_shows_nothing_and_a_timeout_says_so():
    out = io.StringIO()
    lab = Lab(waiting=WaitView(out, every_s=10, quiet_s=5, live=False, clock=Ticks()))
    assert lab.wait_for("a quick thing", polls(2), timeout_s=5, interval_s=0)
    assert out.getvalue() == ""
    with pytest.raises(WaitTimeout):
        lab.wait_for("something that never comes", lambda: False, timeout_s=0.05, interval_s=0.001)
    assert out.getvalue().splitlines()[-1] == "something that never comes: did not come within 0 s"


def test_an_interrupted_wait_says_it_stopped_not_that_it_timed_out():
    """Ctrl-C 8 s into a 67 s wait once ended it with "did not come within 67 s": untrue."""
    out = io.StringIO()
    clock = Ticks()
    lab = Lab(waiting=WaitView(out, every_s=10, quiet_s=5, live=False, clock=clock))
    calls = iter(range(1, 10_000))

    def interrupted_at_the_20th_poll():
        if next(calls) >= 20:
            raise KeyboardInterrupt
        return False

    with pytest.raises(KeyboardInterrupt):
        lab.wait_for("A's TIME_WAIT to expire (60 s)", interrupted_at_the_20th_poll, timeout_s=67,
                     interval_s=0, due=(clock.now + 55, clock.now + 57))
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("A's TIME_WAIT to expire (60 s): stopped waiting after ") and "67" not in last


def test_on_a_terminal_the_countdown_is_live_and_ends_in_one_line():
    out = io.StringIO()
    out.isatty = lambda: True                                                # a terminal, as rich sees it
    clock = Ticks()
    lab = Lab(waiting=WaitView(out, quiet_s=5, clock=clock))
    lab.wait_for("the orphaned server socket to give up", polls(30), timeout_s=60, interval_s=0,
                 due=(clock.now + 10, clock.now + 20))
    text = out.getvalue()
    assert "waiting" in text and "gives up at 60 s" in text                  # the live line was drawn
    assert text.endswith("the orphaned server socket to give up: came after 30.0 s\n")


def test_without_a_view_a_wait_is_as_it_was():
    lab = Lab()
    assert lab.wait_for("x", polls(3), timeout_s=5, interval_s=0) is True


def test_a_check_that_is_not_applicable_shows_as_such_with_its_reason(report):
    """n/a is neither a pass nor a FAIL in the terminal: its own mark, its reason kept."""
    report["options"]["student"] = False
    c = report["checks"][0]
    c.update(outcome="n/a", passed=False, observed="timestamps off: nothing to test")
    out = shown(report)
    line = next(x for x in out.splitlines() if c["name"] in x)
    assert "n/a" in line and "FAIL" not in line and "pass" not in line.split(c["name"])[0]
    assert "timestamps off: nothing to test" in out
