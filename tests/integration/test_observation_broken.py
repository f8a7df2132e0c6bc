"""A broken observation is never a protocol result: a capture killed mid-run, a lab host whose
namespace vanishes, and a lab stopped (SIGSTOP) and continued each end the run with exit 2 and
one `twlab:` line naming what broke; the report keeps what was seen but judges nothing (every
check inconclusive), and nothing of the lab is left.

Before lab.health existed the first two exited 1 with protocol FAILs ("server.pcap: 0 FINs",
"nstat: TcpExtTW +0": counters read from a namespace pyroute2 had silently re-created), and the
third blamed nft or failed a timing check."""

from __future__ import annotations

import json
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


def _start(backend: str, artifacts: Path, scenario: str = "lost-ack") -> subprocess.Popen:
    return subprocess.Popen([INVOKE, "run", scenario, "--backend", backend, "--artifacts", str(artifacts)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def _until(proc: subprocess.Popen, needle: str, timeout_s: float = 120) -> str:
    seen, fd = b"", proc.stdout.fileno()
    deadline = time.monotonic() + timeout_s
    while needle.encode() not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {needle!r} in the run's output: {seen.decode(errors='replace')}"
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 4096)
            assert chunk, f"the run ended before {needle!r}: {seen.decode(errors='replace')}"
            seen += chunk
    return seen.decode(errors="replace")


def _lab_id(out: str) -> str:
    m = re.search(r"^lab ([0-9a-f]{6,}) up on ", out, re.MULTILINE)
    assert m, out
    return m.group(1)


def _ns_inode(backend: str, lab_id: str, host: str) -> int:
    if backend == "netns":
        return os.stat(f"/run/netns/twlab-{lab_id}-{host}").st_ino
    pid = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", f"twlab-{lab_id}-{host}"],
                         capture_output=True, text=True, check=True).stdout.strip()
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def _tcpdump_in(inode: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() == "tcpdump" and \
                        os.stat(f"/proc/{entry}/ns/net").st_ino == inode and \
                        b"nflog" not in Path(f"/proc/{entry}/cmdline").read_bytes():
                    out.append(int(entry))
            except OSError:
                continue
    return out


def _finish(proc: subprocess.Popen, seen: str) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=180)
    return proc.returncode, seen + out.decode(errors="replace"), err.decode(errors="replace")


def _judged_nothing(artifacts: Path, kind: str) -> dict:
    report = json.loads((artifacts / "report.json").read_text())
    assert report["verdict"] == "error", report["error"]
    assert report["checks"], "the checks are kept, as inconclusive"
    assert all(c["outcome"] == "inconclusive" and not c["passed"] for c in report["checks"]), \
        [(c["name"], c["outcome"]) for c in report["checks"]]
    # a killed container takes its tcpdump with it: the namespace is then not the only loss
    assert kind in [p["kind"] for p in report["observation"]["problems"]], report["observation"]
    return report


def _one_line(err: str, *words: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("twlab: "), err
    for w in words:
        assert w in lines[0], err
    assert "Traceback" not in err


def test_a_killed_capture_is_an_error_not_a_fail(backend, tmp_path, lab_leftovers):
    art = tmp_path / "art"
    proc = _start(backend, art)
    seen = _until(proc, "running lost-ack")
    lab_id = _lab_id(seen)
    time.sleep(0.3)                       # mid-scenario: the FIN copies are still coming
    victims = _tcpdump_in(_ns_inode(backend, lab_id, "server"))
    assert len(victims) == 1, victims
    os.kill(victims[0], signal.SIGKILL)
    code, out, err = _finish(proc, seen)
    assert code == 2, out + err
    _one_line(err, "capture in server ended early", "SIGKILL")
    _judged_nothing(art, "capture")
    assert "? not captured" in out            # the ladder claims no loss it cannot see
    assert not find(lab_id)
    assert lab_leftovers() == []


def test_a_vanished_host_is_an_error_not_a_fail(backend, tmp_path, lab_leftovers):
    art = tmp_path / "art"
    proc = _start(backend, art)
    seen = _until(proc, "running lost-ack")
    lab_id = _lab_id(seen)
    time.sleep(0.3)
    if backend == "netns":                # what `ip netns del` by hand does
        subprocess.run(["ip", "netns", "del", f"twlab-{lab_id}-client"], check=True)
    else:                                 # the container killed under the lab's feet
        subprocess.run(["docker", "kill", f"twlab-{lab_id}-client"], check=True, capture_output=True)
    code, out, err = _finish(proc, seen)
    assert code == 2, out + err
    _one_line(err, "client's network namespace vanished")
    if (art / "report.json").exists():    # the run went on to its end: a report judging nothing
        _judged_nothing(art, "namespace")
    assert not find(lab_id)
    assert lab_leftovers() == []
    # entering a namespace never makes one: nothing named like the lab's client came back
    assert not Path(f"/run/netns/twlab-{lab_id}-client").exists()


def test_a_stopped_lab_says_it_cannot_judge(backend, tmp_path, lab_leftovers):
    art = tmp_path / "art"
    proc = _start(backend, art)
    seen = _until(proc, "running lost-ack")
    lab_id = _lab_id(seen)
    time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGSTOP)   # Ctrl-Z, or a debugger, or a frozen VM
    time.sleep(4)
    os.killpg(proc.pid, signal.SIGCONT)
    code, out, err = _finish(proc, seen)
    assert code == 2, out + err
    _one_line(err, "the lab was stopped for")
    if (art / "report.json").exists():
        _judged_nothing(art, "paused")
    assert not find(lab_id)
    assert lab_leftovers() == []


def _sampler_of(invoke_pid: int) -> int:
    """The lab's sampler: the child of the run's process scheduled SCHED_FIFO (lab.sampling)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == invoke_pid and int(fields[38]) == 1:     # ppid, policy SCHED_FIFO
                return int(entry)
    raise AssertionError("no sampler process under the run")


def test_a_killed_sampler_is_an_error_not_a_fail(tmp_path, lab_leftovers):
    art = tmp_path / "art"
    proc = _start("netns", art)
    seen = _until(proc, "running lost-ack")
    lab_id = _lab_id(seen)
    time.sleep(0.3)
    os.kill(_sampler_of(proc.pid), signal.SIGKILL)
    code, out, err = _finish(proc, seen)
    assert code == 2, out + err
    _one_line(err, "the socket sampler ended early", "SIGKILL")
    _judged_nothing(art, "sampler")
    assert not find(lab_id)
    assert lab_leftovers() == []
