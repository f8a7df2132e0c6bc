"""lab.interrupts: signals become Interrupted; inside a shield they wait until it ends; only the
first signal stops a run; and a batch stops as a whole (lab.pool)."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time

import pytest

from lab.interrupts import Interrupted, interrupts_as_exceptions, shielded, signal_name, signal_of


def _signal_self(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.05)                      # the handler runs at the next bytecode boundary


def test_sigterm_and_sighup_become_interrupted_naming_the_signal():
    # whatever the test runner inherited: under `nohup` SIGHUP arrives ignored (see below)
    sigs = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    saved = {sig: signal.getsignal(sig) for sig in sigs}
    for sig in sigs:
        signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
    try:
        for sig, name in zip(sigs, ("SIGTERM", "SIGHUP", "Ctrl-C (SIGINT)")):
            with pytest.raises(Interrupted) as got, interrupts_as_exceptions():
                _signal_self(sig)
            assert got.value.signum == sig and signal_name(got.value) == name
            assert signal_of(got.value) == signal.Signals(sig).name
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    assert signal_name(KeyboardInterrupt()) == "Ctrl-C (SIGINT)"


def test_a_signal_the_run_was_started_to_ignore_stays_ignored():
    """`nohup invoke run ...`: SIGHUP arrives ignored, and a run keeps it so (a closed terminal
    does not stop a run its user detached)."""
    saved = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with interrupts_as_exceptions():
            _signal_self(signal.SIGHUP)               # nothing raised
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, saved)


def test_a_shield_holds_the_signal_until_its_block_is_done():
    done = []
    with pytest.raises(Interrupted) as got, interrupts_as_exceptions():
        with shielded():
            _signal_self(signal.SIGINT)
            _signal_self(signal.SIGTERM)
            with shielded():                  # nested: still held
                done.append("inner")
            done.append("outer")
    assert done == ["inner", "outer"] and got.value.signum == signal.SIGINT


def test_hold_only_reports_without_raising_and_a_running_interrupt_is_not_replaced():
    with interrupts_as_exceptions():
        with shielded(hold_only=True) as sh:
            _signal_self(signal.SIGTERM)
        assert sh.signum == signal.SIGTERM
    with pytest.raises(KeyboardInterrupt) as got, shielded():
        _signal_self(signal.SIGTERM)
        raise KeyboardInterrupt("the first one")
    assert str(got.value) == "the first one"


def test_a_signal_while_stopping_does_not_interrupt_the_stopping():
    cleaned = []
    with pytest.raises(Interrupted) as got, interrupts_as_exceptions():
        try:
            _signal_self(signal.SIGINT)
        finally:
            _signal_self(signal.SIGINT)       # would cut this finally short
            cleaned.append(True)
    assert cleaned == [True] and got.value.signum == signal.SIGINT


def test_an_ignored_sigint_stays_ignored():
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupts_as_exceptions(), shielded():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            _signal_self(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, old)


def test_a_signal_landing_where_python_cannot_raise_is_delivered_again(capfd):
    class Dropped:
        def __del__(self):
            signal.raise_signal(signal.SIGTERM)   # the handler runs here, where raising is "ignored"

    went_on = []
    with pytest.raises(Interrupted) as got, interrupts_as_exceptions():
        Dropped()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:        # the signal, delivered again, stops this loop
            pass
        went_on.append(True)
    assert got.value.signum == signal.SIGTERM and not went_on
    assert "Exception ignored" not in capfd.readouterr().err


_IN_A_FORK_HOOK = """
import os, signal, time
from lab.interrupts import Interrupted, interrupts_as_exceptions
# a hook that runs after each fork in the parent, as logging's _releaseLock does; the signal
# arrives while it runs (the clean-clone CI met this with a batch's SIGINT)
os.register_at_fork(after_in_parent=lambda: signal.raise_signal(signal.SIGINT))
try:
    with interrupts_as_exceptions():
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pass
        print("went on")
except Interrupted as stopped:
    os.waitpid(pid, 0)
    print("interrupted by", stopped.signum)
"""


def test_a_signal_in_a_fork_hook_still_stops_the_run():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _IN_A_FORK_HOOK], capture_output=True, text=True, timeout=60,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert done.stdout == f"interrupted by {int(signal.SIGINT)}\n", done.stdout + done.stderr
    assert done.stderr == "", done.stderr


def test_interrupted_crosses_processes_intact():
    again = pickle.loads(pickle.dumps(Interrupted(signal.SIGTERM)))
    assert isinstance(again, Interrupted) and again.signum == signal.SIGTERM


def sleeper(job):
    """A job that would run for ten minutes unless stopped (module level: spawned workers import it)."""
    from lab.pipeline import Result

    open(job.artifacts, "w").close()
    time.sleep(600)
    return Result(run=job.run, scenario=job.scenario, verdict="pass", exit_code=0, artifacts=str(job.artifacts))


@pytest.mark.timeout(120)
def test_a_stopped_batch_starts_nothing_more_and_returns_what_ran(tmp_path):
    from lab.pipeline import Job
    from lab.pool import run_jobs

    jobs = [Job(run=i, scenario="lost-ack", artifacts=tmp_path / f"run-{i}") for i in (1, 2, 3)]
    results = []

    def stop_once_running() -> None:
        while not os.path.exists(jobs[0].artifacts):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    stopper = threading.Thread(target=stop_once_running, daemon=True)
    stopper.start()
    with pytest.raises(Interrupted) as got:
        run_jobs(sleeper, jobs, 1, lambda job, res: results.append(res))
    assert [r.run for r in results] == [1], results
    assert results[0].interrupted and results[0].error == "interrupted by SIGTERM", results
    assert got.value.not_run == [2, 3]
    assert not os.path.exists(jobs[1].artifacts), "the second job was started"


def test_a_ctrl_c_inside_pyroute2s_constructor_waits_until_the_socket_is_made(monkeypatch):
    """A stopped `run all` once printed a half-made asyncio loop's failing __del__: the Ctrl-C had
    landed inside IPRoute(). The socket is now made whole, closed, and then the run stops."""
    import contextlib

    from lab import netlink, nsops

    made = []

    class Socket:
        def __init__(self):
            _signal_self(signal.SIGINT)          # the Ctrl-C lands mid-construction
            made.append("whole")

        def close(self):
            made.append("closed")

    monkeypatch.setattr(netlink, "IPRoute", Socket)
    monkeypatch.setattr(nsops, "inside", lambda path: contextlib.nullcontext())
    with pytest.raises(Interrupted), interrupts_as_exceptions():
        with nsops.iproute("/run/netns/x"):
            made.append("used")                  # never: the held Ctrl-C is raised first
    assert made == ["whole", "closed"]
