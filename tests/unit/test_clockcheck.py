"""lab.clockcheck: where the kernel's clock and the wall clock parted, read from the sampler's
timer samples, and the lab's note of it (the run then judges nothing)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from lab.clockcheck import clock_stalls
from lab.health import Health
from lab.watch import Watch

RECORD = Path(__file__).resolve().parent.parent / "data" / "clock-stall-time-wait.json"
KEY = "10.0.0.1:40000-10.0.0.2:5000"


def _tw(t: float, left_ms: int, state: str = "TIME_WAIT") -> list:
    return [t, KEY, state, "timewait", left_ms, 0, t + 0.0001]


def test_the_paused_machines_run_shows_one_stall_of_twelve_seconds():
    """The run that failed time-wait-lasts-60s with 74.6 s: its TIME-WAIT timer had 4160 ms left,
    then after 12.4 s with no sample 1932 ms - due 12.4 s later, nothing having restarted it."""
    series = json.loads(RECORD.read_text())["timer_samples"]
    stalls = clock_stalls(series)
    assert len(stalls) == 1, stalls
    s = stalls[0]
    assert (s.host, s.state) == ("client", "TIME_WAIT") and 12.3 < s.lag_s < 12.4
    assert 12.3 < s.until - s.since < 12.4
    assert "fell 12.4 s behind the wall clock" in s.text and "paused" in s.text


def test_a_timer_counting_down_with_the_wall_clock_is_no_stall():
    series = {"client": [_tw(100 + i * 0.5, 60000 - i * 500) for i in range(100)]}
    assert clock_stalls(series) == []
    # a sampler that fell 5 s behind is a gap, not a stall: the timer kept the wall clock's pace
    series = {"client": [_tw(100, 50000), _tw(105, 45000)]}
    assert clock_stalls(series) == []


def test_a_restart_an_overdue_timer_and_other_timers_are_not_stalls():
    restart = {"client": [_tw(100, 10000), _tw(102, 60000)]}           # a FIN restarted TIME-WAIT
    overdue = {"client": [_tw(100, 100), _tw(102, 0)]}                 # past due, not run yet
    rto = {"server": [[100, KEY, "LAST_ACK", "on", 400, 1, 100.0001],   # an RTO timer is re-armed
                      [101, KEY, "LAST_ACK", "on", 300, 1, 101.0001]]}  # at any length: not read
    assert clock_stalls(restart) == clock_stalls(overdue) == clock_stalls(rto) == []


def test_a_stall_is_found_per_socket_and_state():
    series = {"client": [_tw(100, 30000), _tw(100.2, 5000, "FIN_WAIT2"), _tw(104, 28000),
                         _tw(104.1, 4500, "FIN_WAIT2")]}
    stalls = clock_stalls(series)
    assert [(s.state, s.lag_s) for s in stalls] == [("TIME_WAIT", 2.0), ("FIN_WAIT2", 3.4)], stalls


def test_the_lab_notes_a_stall_as_broken_observation():
    lab = SimpleNamespace(health=Health(),
                          sampler=SimpleNamespace(series=json.loads(RECORD.read_text())["timer_samples"]))
    Watch.clock_checked(lab)
    assert [p.kind for p in lab.health.problems] == ["clock"]
    assert "the machine was paused or its clock set" in lab.health.summary()
    quiet = SimpleNamespace(health=Health(), sampler=SimpleNamespace(series={"client": [_tw(100, 1000)]}))
    Watch.clock_checked(quiet)
    assert not quiet.health


def test_wall_gain_reads_the_wall_clocks_gain_from_one_timers_samples():
    from lab.clockcheck import wall_gain
    from lab.records import TimerSample

    steady = [TimerSample(*_tw(100 + i, 60000 - i * 1000)) for i in range(60)]
    lo, hi = wall_gain(steady)
    assert -0.001 < lo <= 0 <= hi < 0.001
    # the wall clock 0.5 % fast: each second of it is 995 ms of the kernel's
    drifting = [TimerSample(*_tw(100 + i, 60000 - i * 995)) for i in range(60)]
    lo, hi = wall_gain(drifting)
    assert 0.29 < lo <= hi < 0.3
    restarted = steady[:10] + [TimerSample(*_tw(111, 60000))]
    assert wall_gain(restarted) is None and wall_gain(steady[:1]) is None
    overdue = steady + [TimerSample(*_tw(170, 0))]              # past due: read no further
    assert wall_gain(overdue) == wall_gain(steady)
