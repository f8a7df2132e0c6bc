"""lab.pool: a worker that dies (here by SIGKILL) breaks the executor, and every job it takes
with it says how the workers ended, not only that one "terminated abruptly"."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from lab.pipeline import Job, Result
from lab.pool import run_jobs


def _dies_on_the_second(job: Job) -> Result:
    if job.run == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.3)
    return Result(run=job.run, scenario=job.scenario, verdict="pass", exit_code=0, artifacts="x")


def test_a_killed_worker_is_named_with_its_signal():
    got: dict[int, Result] = {}
    jobs = [Job(run=i, scenario="lost-ack", artifacts=Path("/nonexistent")) for i in (1, 2, 3)]
    run_jobs(_dies_on_the_second, jobs, 2, lambda job, res: got.setdefault(job.run, res))
    assert got[2].verdict == "error" and "BrokenProcessPool" in got[2].error
    assert "SIGKILL" in got[2].error and "workers ended" in got[2].error
