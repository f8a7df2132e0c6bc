"""Interrupted runs leave nothing behind: SIGINT and SIGTERM at several moments of a run
(bring-up, mid-scenario, tear-down) on both backends, and SIGKILL followed by `invoke clean` or by
the next run's start. The per-test guard in conftest.py checks that no namespace, container or
network of any lab remains, and the session guard that the host's nft ruleset, qdiscs, links,
routes and sysctls are as they were.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lab.cleanup import find

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
INVOKE = str(REPO / ".venv" / "bin" / "invoke")


def _start(backend: str, artifacts: Path) -> subprocess.Popen:
    # its own session, like a terminal job: the signal goes to the run's process group
    return subprocess.Popen([INVOKE, "run", "lost-ack", "--backend", backend, "--artifacts", str(artifacts)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _wait_for_line(proc: subprocess.Popen, needle: str, timeout_s: float = 120) -> str:
    """Read the run's output until a line contains *needle*; return everything read."""
    seen = b""
    deadline = time.monotonic() + timeout_s
    fd = proc.stdout.fileno()
    while needle.encode() not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {needle!r} in the run's output: {seen.decode(errors='replace')}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            assert chunk, f"the run ended before {needle!r}: {seen.decode(errors='replace')}"
            seen += chunk
    return seen.decode(errors="replace")


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


def _lab_id(out: str) -> str | None:
    m = re.search(r"^lab ([0-9a-f]{6,}) up on ", out, re.MULTILINE)
    return m.group(1) if m else None


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out.decode(errors="replace")


# moment -> (line to wait for, extra delay): bring-up starts when the backend is chosen; the
# scenario runs after "running"; 1.9 s into it the server's FIN has been retransmitted and the
# run is near or in its tear-down
MOMENTS = {
    "bring-up": ("backend:", 0.0),
    "mid-scenario": ("running lost-ack", 0.3),
    "tear-down": ("running lost-ack", 1.9),
}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("moment", list(MOMENTS))
def test_interrupted_run_leaves_nothing(backend, moment, sig, tmp_path, lab_leftovers):
    proc = _start(backend, tmp_path / "art")
    needle, delay = MOMENTS[moment]
    seen = _wait_for_line(proc, needle)
    time.sleep(delay)
    os.killpg(proc.pid, sig)
    code, out = _finish(proc)
    out = seen + out
    lab_id = _lab_id(out)
    # interrupted (130), or - when the signal came as the run was ending - its own verdict
    assert code in (130, 0, 1), out
    if code == 130:
        assert "the lab was removed" in out, out
        assert "Traceback" not in out, out
    if lab_id:
        left = find(lab_id)
        assert not left, f"left behind after {sig.name} at {moment}: {left.lines()}"
    assert lab_leftovers() == []


def test_killed_run_is_cleaned_by_invoke_clean(backend, tmp_path, lab_leftovers):
    proc = _start(backend, tmp_path / "art")
    lab_id = _lab_id(_wait_for_line(proc, "running lost-ack"))
    helpers = _children(proc.pid)      # tcpdump and the peers: in sessions of their own
    assert any(comm == "tcpdump" for comm in helpers.values()), helpers
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
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
    proc = _start("netns", tmp_path / "one")
    lab_id = _lab_id(_wait_for_line(proc, "running lost-ack"))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    killed = find(lab_id).namespaces
    assert killed, "a SIGKILLed run should have left its namespaces"
    done = subprocess.run([INVOKE, "run", "lost-ack", "--backend", "netns", "--artifacts",
                           str(tmp_path / "two")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "removed leftovers of killed runs" in done.stdout
    assert not find(lab_id)
