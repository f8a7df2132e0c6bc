"""lab.clockcheck: the wall clock against the kernel's - the sampler's record of their offset, a
step in it breaking the run's observation, the gain over a stretch; and for runs recorded without
that record, the gain read from a fixed-length timer's samples."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from lab.clockcheck import clock_steps, timer_gain, wall_gain
from lab.health import Cadence, Health
from lab.records import TimerSample
from lab.watch import Watch

RECORD = Path(__file__).resolve().parent.parent / "data" / "clock-stall-time-wait.json"
KEY = "10.0.0.1:40000-10.0.0.2:5000"


def _tw(t: float, left_ms: int, state: str = "TIME_WAIT") -> TimerSample:
    return TimerSample(t, KEY, state, "timewait", left_ms, 0, t + 0.0001)


def test_the_sampler_keeps_the_offset_whenever_it_moved_a_millisecond():
    c = Cadence()
    for i in range(10):                                   # clocks together: one offset kept
        c.tick(1000.0 + i * 0.005, 10.0 + i * 0.005)
    c.tick(1000.1, 10.0999)                               # moved 0.1 ms: not kept
    c.tick(1000.2, 10.198)                                # 2 ms: kept
    c.tick(1000.3, None)                                  # a split read: no offset
    assert [round(off, 3) for _, off in c.offsets] == [990.0, 990.002]
    assert c.to_json()["clock_offsets"] == c.offsets


def test_a_step_either_way_is_a_clock_step_and_a_drift_is_not():
    drift = [(1000.0 + 2 * i, 990.0 + 0.01 * i) for i in range(100)]          # 10 ms every 2 s
    assert clock_steps(drift) == []
    stalled = drift[:50] + [(t + 12.4, off + 12.35) for t, off in drift[50:]]
    (step,) = clock_steps(stalled)
    assert step.step_s == 12.36 and step.at == stalled[50][0]
    assert "jumped 12.4 s ahead of the kernel's clock" in step.text and "paused" in step.text
    (back,) = clock_steps([(1000.0, 990.0), (1001.0, 989.2)])
    assert back.step_s == -0.8 and "fell 0.8 s behind" in back.text


def test_wall_gain_between_two_moments():
    drift = [(1000.0 + 2 * i, 990.0 + 0.01 * i) for i in range(100)]
    assert wall_gain(drift, 1010.0, 1070.0) == 0.3        # 30 steps of 10 ms
    assert wall_gain(drift, 900.0, 1001.0) == 0.0          # before the first: the first offset
    assert wall_gain([], 1010.0, 1070.0) is None


def test_timer_gain_reads_the_gain_from_one_timers_samples():
    steady = [_tw(100 + i, 60000 - i * 1000) for i in range(60)]
    lo, hi = timer_gain(steady)
    assert -0.001 < lo <= 0 <= hi < 0.001
    drifting = [_tw(100 + i, 60000 - i * 995) for i in range(60)]      # the wall clock 0.5 % fast
    lo, hi = timer_gain(drifting)
    assert 0.29 < lo <= hi < 0.3
    assert timer_gain(steady[:10] + [_tw(111, 60000)]) is None         # restarted
    assert timer_gain(steady[:1]) is None
    assert timer_gain(steady + [_tw(170, 0)]) == timer_gain(steady)     # past due: read no further


def test_the_paused_machines_timer_came_due_twelve_seconds_later():
    """The run that failed time-wait-lasts-60s with 74.6 s (recorded before the offsets were kept):
    its TIME-WAIT timer had 4160 ms left, then after 12.4 s with no sample 1932 ms - due 12.4 s
    later on the wall clock, nothing having restarted it."""
    rows = json.loads(RECORD.read_text())["timer_samples"]["client"]
    lo, hi = timer_gain([TimerSample.of(r) for r in rows])
    assert 12.3 < lo <= hi < 13          # the 12.4 s stall and the slower drift around it


def _lab(offsets) -> SimpleNamespace:
    return SimpleNamespace(health=Health(), sampler=SimpleNamespace(cadence=SimpleNamespace(offsets=offsets)))


def test_the_lab_notes_a_clock_step_as_broken_observation():
    lab = _lab([(1000.0, 990.0), (1012.4, 1002.35)])
    Watch.clock_checked(lab)
    assert [p.kind for p in lab.health.problems] == ["clock"]
    assert "the machine was paused or its clock set" in lab.health.summary()
    quiet = _lab([(1000.0 + 2 * i, 990.0 + 0.01 * i) for i in range(100)])
    Watch.clock_checked(quiet)
    assert not quiet.health
    broken = _lab(None)                                    # the check itself failing: noted, not raised
    Watch.clock_checked(broken)
    assert [p.kind for p in broken.health.problems] == ["watch"]
