"""Interrupted runs leave nothing behind: SIGINT and SIGTERM at several moments of a run
(bring-up, mid-scenario, tear-down) on both backends, a second Ctrl-C 0.3 s after the first at each
of them, and SIGKILL followed by `invoke clean` or by the next run's start. Every run is started as
a terminal starts a job (tests/integration/procs.py), and one that is signalled must exit 130: it
cannot pass by simply finishing. The per-test guard in conftest.py checks that no namespace,
container or network of any lab remains, and the session guard that the host's nft ruleset,
qdiscs, links, routes and sysctls are as they were.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lab.cleanup import find

from .procs import INVOKE, REPO, Run, assert_clean_leaves_nothing_of, assert_interrupted, lab_id_of

pytestmark = pytest.mark.integration

NAMED = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


def _start(backend: str, artifacts: Path, scenario: str = "lost-ack") -> Run:
    return Run("run", scenario, "--backend", backend, "--artifacts", str(artifacts))


def _children(pid: int) -> dict[int, str]:
    """Processes whose parent is *pid*: pid -> command name."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except FileNotFoundError:
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out[int(entry)] = comm
    return out


# moment -> (line to wait for, extra delay): bring-up starts when the backend is chosen; the
# scenario runs after "running"; the lab says when it starts tearing down
MOMENTS = {
    "bring-up": ("backend:", 0.0),
    "mid-scenario": ("running lost-ack", 0.3),
    "tear-down": ("tearing down", 0.0),
}


def _assert_gone(lab_id: str | None, out: str) -> None:
    """Nothing of the lab is left, and `invoke clean` finds nothing of it. (No lab id: stopped
    before one was made - the per-test guard checks that nothing at all was left.)"""
    if lab_id:
        left = find(lab_id)
        assert not left, f"left behind: {left.lines()}\n{out}"
        assert_clean_leaves_nothing_of(lab_id)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("moment", list(MOMENTS))
def test_interrupted_run_leaves_nothing(backend, moment, sig, tmp_path):
    run = _start(backend, tmp_path / "art")
    needle, delay = MOMENTS[moment]
    run.wait_for(needle)
    time.sleep(delay)
    run.group(sig)
    code, out = run.finish()
    assert code == 130, f"exit {code}, not 130:\n{out}"
    _assert_gone(lab_id_of(out), out)
    assert_interrupted(code, out, NAMED[sig], made=True if "up on" in out else None)


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_second_ctrl_c_does_not_cut_the_tear_down_short(backend, moment, tmp_path):
    """A second Ctrl-C while the lab is being removed - as the removal starts, or 0.3 s after the
    first, whichever comes first: it waits for the removal the first one started."""
    run = _start(backend, tmp_path / "art")
    needle, delay = MOMENTS[moment]
    run.wait_for(needle)
    time.sleep(delay)
    mark = len(run.seen) if moment != "tear-down" else 0
    run.group(signal.SIGINT)
    run.wait_for("tearing down", after=mark, timeout_s=0.3, end_ok=True, timeout_ok=True)
    run.group(signal.SIGINT)
    code, out = run.finish()
    assert code == 130, f"exit {code}, not 130:\n{out}"
    _assert_gone(lab_id_of(out), out)
    assert_interrupted(code, out, "Ctrl-C (SIGINT)", made=True if "up on" in out else None)


def test_second_ctrl_c_in_a_long_docker_run(need_docker, tmp_path):
    """The report's case: time-wait-duration on docker, Ctrl-C twice 0.3 s apart about 8 s in."""
    run = _start("docker", tmp_path / "art", scenario="time-wait-duration")
    run.wait_for("running time-wait-duration")
    time.sleep(8)
    run.group(signal.SIGINT)
    time.sleep(0.3)
    run.group(signal.SIGINT)
    code, out = run.finish()
    assert code == 130, f"exit {code}, not 130:\n{out}"
    _assert_gone(lab_id_of(out), out)
    assert_interrupted(code, out, "Ctrl-C (SIGINT)", made=True)


def test_a_ctrl_c_as_the_stopped_run_exits_does_not_change_its_exit(backend, tmp_path):
    """A second Ctrl-C once the lab is removed, as the run says so and exits (a clean-clone CI met
    it at 0.3 s on docker, whose run stops in about 0.45 s): the exit is still 130, not death by
    SIGINT (Python's own handler, or none while the interpreter finalizes)."""
    run = _start(backend, tmp_path / "art")
    run.wait_for("running lost-ack")
    time.sleep(0.3)
    run.group(signal.SIGINT)
    run.wait_for("twlab: interrupted by", end_ok=True)
    run.group(signal.SIGINT)
    code, out = run.finish()
    assert code == 130, f"exit {code}, not 130:\n{out}"
    assert_interrupted(code, out, "Ctrl-C (SIGINT)", made=True)


def test_killed_run_is_cleaned_by_invoke_clean(backend, tmp_path, lab_leftovers):
    run = _start(backend, tmp_path / "art")
    lab_id = lab_id_of(run.wait_for("running lost-ack"))
    helpers = _children(run.proc.pid)      # tcpdump and the peers: in sessions of their own
    assert any(comm == "tcpdump" for comm in helpers.values()), helpers
    run.group(signal.SIGKILL)
    run.finish(timeout_s=30)
    assert lab_id and find(lab_id), "a SIGKILLed run should have left its lab (else this test shows nothing)"
    done = subprocess.run([INVOKE, "clean"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "removed" in done.stdout
    assert not find(lab_id), find(lab_id).lines()
    assert lab_leftovers() == []
    # tcpdump and the peers died with the run (parent-death signal): none of them still runs
    def alive() -> list[str]:
        out = []
        for pid, comm in helpers.items():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                        out.append(f"{pid} {comm}")
            except FileNotFoundError:
                pass
        return out

    deadline = time.monotonic() + 10
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(), f"still running after the run was killed: {alive()}"


def test_killed_run_is_cleaned_by_the_next_run(tmp_path):
    run = _start("netns", tmp_path / "one")
    lab_id = lab_id_of(run.wait_for("running lost-ack"))
    run.group(signal.SIGKILL)
    run.finish(timeout_s=30)
    killed = find(lab_id).namespaces
    assert killed, "a SIGKILLed run should have left its namespaces"
    done = subprocess.run([INVOKE, "run", "lost-ack", "--backend", "netns", "--artifacts",
                           str(tmp_path / "two")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "removed leftovers of killed runs" in done.stdout
    assert not find(lab_id)
