"""A batch of lab runs, each in a process of its own (spawned; forked in a VM guest), some at a time -
stopped as a whole.

Stopping (Ctrl-C, SIGTERM or SIGHUP to the batch's process): no job starts any more, the running
ones are sent SIGTERM and each tears its lab down, and what they return is collected. Then the
interrupt is raised again, carrying ``results`` (every job that ended, with the interrupted ones)
and ``not_run`` (the jobs that never started), so the caller can still write its summary.

Idle between jobs, a worker holds signals off (the batch decides what happens); a job turns them
into exceptions for its duration, like a run of its own (lab.interrupts).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from collections.abc import Callable

from .interrupts import Interrupted, interrupts_as_exceptions, shielded
from .pipeline import Job, Result, interrupted

__all__ = ["run_jobs"]

_STOP = None            # in a worker: the batch's "stop" event


def _idle(signum, frame) -> None:
    """A worker between jobs: its batch decides what a signal means."""


def _init(stop) -> None:
    global _STOP
    from . import interrupts

    _STOP = stop
    interrupts._Stop.quiet = True           # the batch speaks to the user
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(s) is not signal.SIG_IGN:
            signal.signal(s, _idle)


def _job(fn: Callable[[Job], Result], job: Job) -> tuple[Result, bool, list[str]]:
    """Run fn(job) in a worker: its labs are accounted for, and a stop is an interrupted result.
    Returns the result, whether it began, and the labs it made."""
    from . import cleanup

    before = cleanup.made_here()
    started = False
    with interrupts_as_exceptions():
        try:
            if _STOP is not None and _STOP.is_set():    # stopped before it began
                raise Interrupted(signal.SIGTERM)
            started = True
            res = fn(job)
        except KeyboardInterrupt as exc:
            res = interrupted(job, exc)
    return res, started, sorted(cleanup.made_here() - before)


def _result(fut: cf.Future, job: Job) -> tuple[Result, bool, list[str]]:
    try:
        return fut.result()
    except KeyboardInterrupt as exc:       # raised as the job's own handling ended
        return interrupted(job, exc), True, []
    except Exception as exc:               # noqa: BLE001 - a broken worker is one job's error
        return Result(run=job.run, scenario=job.scenario, artifacts=str(job.artifacts), verdict="error",
                      exit_code=2, error=f"{type(exc).__name__}: {exc}", family=job.family), True, []


def _ended(pool: cf.ProcessPoolExecutor, settle_s: float = 2.0) -> str:
    """How the pool's worker processes ended, for a broken pool (the executor says only that one
    "terminated abruptly"): exit codes, a signal as its name.

    The executor fails the futures as soon as a worker's sentinel closes, which the kernel does
    before the process can be waited for (and its own thread may be reaping it right then): so
    a worker whose sentinel has closed is given up to *settle_s* to show its exit code."""
    procs = dict(getattr(pool, "_processes", None) or {})        # CPython's; absent: nothing to add
    gone = multiprocessing.connection.wait([p.sentinel for p in procs.values()], timeout=0)
    deadline = time.monotonic() + settle_s
    while any(p.exitcode is None for p in procs.values() if p.sentinel in gone) and time.monotonic() < deadline:
        time.sleep(0.01)
    codes = {pid: p.exitcode for pid, p in procs.items() if p.exitcode is not None}
    words = [f"{pid}: " + (signal.Signals(-c).name if c < 0 else f"exit {c}") for pid, c in sorted(codes.items())]
    return "workers ended: " + (", ".join(words) if words else "none seen ended")


def start_method() -> str:
    """How a batch's workers start: spawned (a fresh interpreter each, sharing nothing with the
    batch's process), except inside a VM guest (lab.vm, several at a time: one at a time runs in
    the process itself, lab.inline): there forked from a batch process that has imported the
    run's code first. Under TCG a spawned worker's start and imports (Python, Invoke for the
    script it re-runs as __mp_main__, pyroute2, the lab) took 6.6 s of a one-scenario matrix
    column's 15.6 s beside its run (Debian 12's kernel, medians of 3); a forked one inherits them.
    The executor starts every forked worker before its own thread (CPython's ProcessPoolExecutor
    does so for "fork"), and a worker holds signals off until its job."""
    if os.environ.get("TWLAB_IN_VM"):
        from . import runner  # noqa: F401 - imported once here, inherited by the forked workers

        return "fork"
    return "spawn"


def run_jobs(fn: Callable[[Job], Result], jobs: list[Job], width: int,
             on_result: Callable[[Job, Result], None]) -> None:
    """fn(job) for every job, *width* at a time, each in a spawned process (fn must be a
    module-level function); on_result(job, result) as each ends. An exception from on_result
    stops the batch too (the running jobs finish, no new one starts) and propagates."""
    from . import cleanup

    ctx = multiprocessing.get_context(start_method())
    stop = ctx.Event()
    pool = cf.ProcessPoolExecutor(max_workers=max(1, width), mp_context=ctx, initializer=_init,
                                  initargs=(stop,))
    futures = {pool.submit(_job, fn, j): j for j in jobs}
    handled: set[cf.Future] = set()

    def take(fut: cf.Future) -> None:
        handled.add(fut)
        res, started, labs = _result(fut, futures[fut])
        if res.error and res.error.startswith("BrokenProcessPool"):
            res.error += f" ({_ended(pool)})"
        cleanup._MADE.update(labs)
        res.labs = labs
        if started:
            on_result(futures[fut], res)
        else:
            handled.discard(fut)             # never began: one of not_run

    try:
        with interrupts_as_exceptions():
            for fut in cf.as_completed(futures):
                take(fut)
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        with shielded(note="stopping the running labs; each is removed first" if interrupted else None,
                      hold_only=True):
            stop.set()
            for fut in futures:
                fut.cancel()
            if interrupted:
                for proc in multiprocessing.active_children():
                    try:
                        os.kill(proc.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            pool.shutdown(wait=True)
            for fut in futures:
                if interrupted and fut not in handled and fut.done() and not fut.cancelled():
                    try:
                        take(fut)
                    except Exception:       # noqa: BLE001 - the interrupt is what speaks now
                        pass
        if interrupted:
            exc.not_run = sorted(futures[f].run for f in futures if f not in handled)
        raise
    pool.shutdown(wait=True)
