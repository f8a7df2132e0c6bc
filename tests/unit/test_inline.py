"""lab.inline: inside a VM guest a batch of width 1 runs its jobs in this process, with
lab.pool's contract (results as they end; an interrupted job stops the batch, naming what
never ran and the signal)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from lab import inline
from lab.interrupts import Interrupted
from lab.pipeline import Job, Result, interrupted


def _jobs(n: int) -> list[Job]:
    return [Job(run=i, scenario="lost-ack", artifacts=Path("/nonexistent")) for i in range(1, n + 1)]


def test_chosen_inside_a_vm_for_one_at_a_time_only(monkeypatch):
    monkeypatch.delenv("TWLAB_IN_VM", raising=False)
    assert not inline.chosen(1)
    monkeypatch.setenv("TWLAB_IN_VM", "1")
    assert inline.chosen(1) and not inline.chosen(2)


def test_jobs_run_here_in_order():
    got = []
    inline.run_jobs(lambda job: Result(run=job.run, scenario=job.scenario, verdict="pass", exit_code=0,
                                       artifacts="x", error=str(os.getpid())),
                    _jobs(3), lambda job, res: got.append((job.run, res.error)))
    assert got == [(1, str(os.getpid())), (2, str(os.getpid())), (3, str(os.getpid()))]


def test_an_interrupted_job_stops_the_batch_with_its_signal_and_what_never_ran():
    got = []

    def second_is_stopped(job: Job) -> Result:
        if job.run == 2:
            return interrupted(job, Interrupted(signal.SIGTERM))       # as run_job words it
        return Result(run=job.run, scenario=job.scenario, verdict="pass", exit_code=0, artifacts="x")

    with pytest.raises(KeyboardInterrupt) as stopped:
        inline.run_jobs(second_is_stopped, _jobs(4), lambda job, res: got.append(job.run))
    assert got == [1, 2] and stopped.value.not_run == [3, 4]
    assert stopped.value.signum == signal.SIGTERM


def test_a_signal_during_a_job_is_that_jobs_interrupt():
    def killed(job: Job) -> Result:
        os.kill(os.getpid(), signal.SIGHUP)         # interrupts_as_exceptions turns it into Interrupted
        raise AssertionError("not reached")

    got = []
    with pytest.raises(KeyboardInterrupt) as stopped:
        inline.run_jobs(killed, _jobs(2), lambda job, res: got.append(res))
    assert got[0].interrupted and got[0].exit_code == 130
    assert stopped.value.signum == signal.SIGHUP and stopped.value.not_run == [2]
