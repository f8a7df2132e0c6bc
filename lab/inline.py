"""A batch's jobs one after another in this process: inside a VM guest, one job at a time.

lab.pool runs each job in a worker process of its own, so a run cannot take the batch down and a
Ctrl-C reaches every lab in order. Inside a VM guest (lab.vm) the VM is that isolation: nobody
types Ctrl-C there, and this machine kills qemu, not the guest's processes. There a worker process
cost a one-scenario matrix column under TCG its pool's imports (concurrent.futures' process pool,
multiprocessing) and a fork: the guest's command beside the run took 7.9 s with a forked worker
and 7.0 s in this process (Debian 12's kernel, lost-ack, medians of 3).

Same contract as lab.pool.run_jobs: on_result(job, result) as each ends; an interrupted job stops
the batch, raising the interrupt with ``not_run``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from .interrupts import Interrupted, interrupts_as_exceptions
from .pipeline import Job, Result, interrupted

__all__ = ["run_jobs", "chosen"]


def chosen(width: int) -> bool:
    """Whether a batch of *width* runs here: one at a time inside a VM guest."""
    return width <= 1 and bool(os.environ.get("TWLAB_IN_VM"))


def run_jobs(fn: Callable[[Job], Result], jobs: list[Job], on_result: Callable[[Job, Result], None]) -> None:
    for i, job in enumerate(jobs):
        with interrupts_as_exceptions():
            try:
                res = fn(job)
            except KeyboardInterrupt as exc:
                res = interrupted(job, exc)
        on_result(job, res)
        if res.interrupted:
            stop = Interrupted(res.signum or signal.SIGINT)
            stop.not_run = [j.run for j in jobs[i + 1:]]
            raise stop

