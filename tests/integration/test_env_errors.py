"""An environment that cannot run the lab: one line saying what to do, exit 2, nothing left.
(Bad *input* is in test_cli.py.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
INVOKE = str(REPO / ".venv" / "bin" / "invoke")


def run(*args: str, prefix: tuple[str, ...] = (), env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, INVOKE, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def one_line(done: subprocess.CompletedProcess, *mentions: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout[-1500:], done.stderr[-1500:])
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("twlab: "), done.stderr
    for text in mentions:
        assert text in lines[0], (text, lines[0])
    assert "Traceback" not in done.stdout + done.stderr
    return lines[0]


# root, but with no capabilities at all (what `sudo` would give back)
NO_CAPS = ("setpriv", "--bounding-set=-all", "--inh-caps=-all")


@pytest.mark.parametrize("backend", ["auto", "netns", "docker"])
def test_without_privileges(backend, tmp_path, lab_leftovers):
    done = run("run", "lost-ack", "--backend", backend, "--artifacts", str(tmp_path / "a"), prefix=NO_CAPS)
    one_line(done, "root", "CAP_NET_ADMIN")
    assert lab_leftovers() == []


def test_up_without_privileges():
    one_line(run("up", "--backend", "netns", prefix=NO_CAPS), "root")


def test_docker_asked_for_but_no_daemon(tmp_path, lab_leftovers):
    done = run("run", "lost-ack", "--backend", "docker", "--artifacts", str(tmp_path / "a"),
               env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    one_line(done, "no Docker daemon", "--backend netns")
    assert lab_leftovers() == []


def test_auto_without_daemon_falls_back_to_netns(tmp_path):
    done = run("run", "lost-ack", "--artifacts", str(tmp_path / "a"),
               env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "backend: netns (no Docker daemon answers" in done.stdout


def test_a_subnet_in_use_elsewhere_is_no_conflict(need_docker, tmp_path, lab_leftovers):
    """A fixed subnet another Docker network holds does not matter: the docker backend makes no
    Docker network, its links live in the lab's own namespaces. The run passes, and the other
    network is untouched."""
    import docker
    from docker.types import IPAMConfig, IPAMPool

    dc = docker.from_env()
    squatter = dc.networks.create("twlabtest-squatter", driver="bridge", internal=True,
                                  ipam=IPAMConfig(pool_configs=[IPAMPool(subnet="10.79.1.0/24")]))
    try:
        done = run("run", "lost-ack", "--backend", "docker", "--artifacts", str(tmp_path / "a"),
                   "--compose", str(REPO / "tests/data/topology-fixed/compose.yaml"))
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert "client 10.79.1.10" in done.stdout, done.stdout[-2000:]
        assert lab_leftovers() == []
        squatter.reload()          # still there: the lab removes only what it made
    finally:
        squatter.remove()
        dc.close()


def test_subnets_chosen_around_taken_ones(need_docker):
    """With the stock compose.yaml the docker backend moves its subnets off taken ones."""
    import ipaddress

    import docker
    from docker.errors import APIError
    from docker.types import IPAMConfig, IPAMPool

    from lab.backends.docker import DockerBackend
    from lab.topology import load

    dc = docker.from_env()
    taken = []
    try:
        for i in range(0, 256, 2):           # half of the pool (a running lab may hold a few)
            try:
                taken.append(dc.networks.create(
                    f"twlabtest-taken-{i}", driver="bridge", internal=True,
                    ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=f"10.77.{i}.0/24")])))
            except APIError:
                pass
        assert len(taken) > 100
        for _ in range(5):
            env = DockerBackend("abcdef").plan(load())
            in_use = [ipaddress.ip_network(c["Subnet"]) for n in dc.api.networks()
                      for c in (n.get("IPAM") or {}).get("Config") or [] if "Subnet" in c]
            for net in ("LEFT", "RIGHT"):
                subnet = ipaddress.ip_network(f"{env['TWLAB_' + net]}.0/24")
                assert not any(subnet.overlaps(u) for u in in_use), subnet
                assert int(str(subnet.network_address).split(".")[2]) % 2 == 1, subnet
    finally:
        for n in taken:
            n.remove()
        dc.close()
