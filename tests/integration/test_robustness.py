"""No hangs, no interference, no collateral: a dead or hung peer or a container that exits ends
the run with a clear error (exit 2) and full cleanup; cleanup never touches look-alikes it did
not make; labs running at the same time do not disturb each other."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from lab.cleanup import clean
from lab.core import Lab
from lab.errors import PeerError

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
INVOKE = str(REPO / ".venv" / "bin" / "invoke")


def test_a_dead_peer_is_an_error_not_a_hang(backend, tmp_path, lab_leftovers):
    with pytest.raises(PeerError, match="server: the peer (died|is gone)"):
        with Lab(backend=backend, artifacts=tmp_path) as lab:
            server = lab.peer("server")
            server.listen("L", 5000)
            server._proc.kill()                       # the program inside the host dies
            server._proc.wait()
            server.info("L")
    assert lab_leftovers() == []


def test_a_hung_peer_times_out(backend, tmp_path, lab_leftovers):
    with pytest.raises(PeerError, match="did not answer 'info' within 2 s"):
        with Lab(backend=backend, artifacts=tmp_path) as lab:
            server = lab.peer("server")
            server.timeout_s = 2
            server.listen("L", 5000)
            os.kill(server.pid if backend == "netns" else _pid_in_container(lab, server), signal.SIGSTOP)
            server.info("L")
    assert lab_leftovers() == []


def _pid_in_container(lab, peer) -> int:
    """The peer's pid as the host sees it (docker exec runs it inside the container)."""
    host_ns = os.stat(lab.host("server").nspath).st_ino
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
                if b"python3" in cmd and b"op_listen" in cmd and os.stat(f"/proc/{entry}/ns/net").st_ino == host_ns:
                    return int(entry)
            except OSError:
                continue
    raise AssertionError("the server's peer process was not found")


def test_a_container_that_exits_ends_the_run(need_docker, tmp_path, lab_leftovers):
    import docker

    with pytest.raises(PeerError):
        with Lab(backend="docker", artifacts=tmp_path) as lab:
            lab.peer("server").listen("L", 5000)
            docker.from_env().containers.get(f"twlab-{lab.lab_id}-server").kill()
            lab.peer("server").info("L")
    assert lab_leftovers() == []


def test_clean_leaves_look_alikes_alone(need_docker):
    """A namespace named like a lab's but not of the form twlab-<hex id>-..., and a Docker
    network called twlab-... without the lab label, are not twlab's: clean keeps them."""
    import docker

    subprocess.run(["ip", "netns", "add", "twlab-notalab"], check=True)
    dc = docker.from_env()
    net = dc.networks.create("twlab-zzzzzz-left", driver="bridge", internal=True)
    try:
        removed = clean()
        assert "twlab-notalab" not in removed.namespaces
        assert "twlab-zzzzzz-left" not in removed.networks
        assert "twlab-notalab" in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                 text=True).stdout
        net.reload()
    finally:
        subprocess.run(["ip", "netns", "del", "twlab-notalab"])
        net.remove()
        dc.close()


def test_labs_side_by_side(backend, tmp_path, lab_leftovers):
    """Four labs at once, each in its own process: all pass, none sees another."""
    done = subprocess.run([INVOKE, "run", "lost-ack", "--backend", backend, "--repeat", "4",
                           "--parallel", "4", "--json", "--artifacts", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["passed"] == 4, summary
    ids = set()
    for run in summary["runs"]:
        report = json.loads((Path(run["artifacts"]) / "report.json").read_text())
        ids.add(report["lab_id"])
        # each lab's captures hold only its own hosts' traffic
        mine = {a for h in report["hosts"].values() for a in h["addresses"].values()}
        for host, segs in report["packets"].items():
            assert {s["src"] for s in segs} | {s["dst"] for s in segs} <= mine, host
    assert len(ids) == 4
    assert lab_leftovers() == []
