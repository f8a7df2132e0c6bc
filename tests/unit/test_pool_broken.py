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


def test_reading_another_labs_mark_never_moves_the_main_thread(monkeypatch):
    """The cause of the SIGKILLed workers: cleanup's marks entered every lab's namespace on the
    main thread, so a lab torn down at that moment counted this process as one of its own."""
    import contextlib
    import threading

    from lab import cleanup, nsops

    seen = []

    class Links:
        def link_lookup(self, ifname):
            return [1]

        def get_links(self, index):
            return [{"IFLA_IFALIAS": "twlab owner=1.2"}]

    @contextlib.contextmanager
    def fake_iproute(path):
        seen.append(threading.current_thread() is threading.main_thread())
        yield Links()

    monkeypatch.setattr(nsops, "iproute", fake_iproute)
    assert cleanup._alias("twlab-abc-client") == "twlab owner=1.2"
    assert seen == [False]


def test_a_process_that_left_the_namespace_is_not_killed(monkeypatch, tmp_path):
    """remove_namespace sends SIGKILL only to what is still inside after SIGTERM."""
    from lab.backends import netns

    sent = []
    monkeypatch.setattr(netns, "_pids_in", lambda path: [4242])
    monkeypatch.setattr(netns, "_in_namespace", lambda pid, target: False)     # gone out at once
    monkeypatch.setattr(netns.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.setattr(netns.pnetns, "remove", lambda name, libc=None: None)
    netns.remove_namespace("twlab-abc-client")
    assert sent == [(4242, signal.SIGTERM)]


def _which_process(job: Job) -> Result:
    import sys

    return Result(run=job.run, scenario=job.scenario, verdict="pass", exit_code=0, artifacts="x",
                  error=f"{os.getppid()} {'lab.core' in sys.modules}")


def test_workers_are_spawned_here_and_forked_with_the_runs_code_inside_a_vm(monkeypatch):
    """Inside a VM guest the workers are forked from a batch process that has imported the run's
    code (lab.runner, and through it lab.core), so a worker starts with it; elsewhere spawned."""
    from lab import pool

    monkeypatch.delenv("TWLAB_IN_VM", raising=False)
    assert pool.start_method() == "spawn"
    monkeypatch.setenv("TWLAB_IN_VM", "1")
    assert pool.start_method() == "fork"
    got: dict[int, Result] = {}
    jobs = [Job(run=i, scenario="lost-ack", artifacts=Path("/nonexistent")) for i in (1, 2)]
    run_jobs(_which_process, jobs, 1, lambda job, res: got.setdefault(job.run, res))
    assert {r.verdict for r in got.values()} == {"pass"}
    assert {r.error for r in got.values()} == {f"{os.getpid()} True"}    # children of this process, code loaded
