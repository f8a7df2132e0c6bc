"""A running lab is contained: unprivileged hosts with only the capabilities they need, no way
out (no default route anywhere), forwarding switched on only inside the router, and no handle on
the Docker daemon from inside a container."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lab.core import Lab

pytestmark = pytest.mark.integration

HOST_IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
CAP_NET_ADMIN, CAP_NET_RAW = 12, 13


def in_ns(nspath: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", f"--net={nspath}", "--", *argv], capture_output=True,
                          text=True, timeout=60)


def host_link_names() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines()}


@pytest.fixture
def start_lab(tmp_path):
    """Start a Lab on a backend; it is closed after the test, and the host's own ip_forward is
    checked to be what it was before."""
    forward_before = HOST_IP_FORWARD.read_text()
    labs: list[Lab] = []

    def start(backend: str) -> Lab:
        lab = Lab(backend=backend, artifacts=tmp_path / backend)
        labs.append(lab)
        lab.start()
        return lab

    try:
        yield start
    finally:
        for lab in labs:
            lab.close()
    assert HOST_IP_FORWARD.read_text() == forward_before


@pytest.fixture
def lab(backend, start_lab):
    return start_lab(backend)


def test_no_default_route_anywhere(lab):
    assert set(lab.hosts) == {"client", "router", "server"}
    for name, host in lab.hosts.items():
        done = in_ns(host.nspath, "ip", "-4", "route", "show", "table", "all")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip(), f"{name}: no routes at all?"
        assert not [r for r in done.stdout.splitlines() if r.startswith("default")], (name, done.stdout)
        # and so nothing outside the lab is reachable
        done = in_ns(host.nspath, "ip", "route", "get", "192.0.2.1")
        assert done.returncode != 0 and "unreachable" in done.stderr, (name, done.stdout, done.stderr)


def test_forwarding_only_inside_the_router(lab):
    host_value = HOST_IP_FORWARD.read_text()
    router = lab.hosts["router"]
    assert in_ns(router.nspath, "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
    assert lab.sysctls["router"]["net.ipv4.ip_forward"] == "1"
    # the router's namespace is not the host's; the host's value is what it was
    assert Path(router.nspath).stat().st_ino != Path("/proc/self/ns/net").stat().st_ino
    assert HOST_IP_FORWARD.read_text() == host_value


def test_every_host_has_its_own_namespace(lab):
    mine = Path("/proc/self/ns/net").stat().st_ino
    inodes = {name: Path(h.nspath).stat().st_ino for name, h in lab.hosts.items()}
    assert mine not in inodes.values()
    assert len(set(inodes.values())) == 3, inodes


def test_netns_lab_makes_nothing_in_the_host_namespace(start_lab):
    before = host_link_names()
    lab = start_lab("netns")
    # (a Docker lab someone else starts meanwhile adds br-*/veth* here; ours would be ethN/pN/br0)
    new = host_link_names() - before
    assert all(n.startswith(("br-", "veth")) for n in new), new
    assert {Path(h.nspath).name for h in lab.hosts.values()} == {
        f"twlab-{lab.lab_id}-{n}" for n in ("client", "router", "server")}
    assert {Path(h.nspath).parent for h in lab.hosts.values()} == {Path("/run/netns")}


def test_containers_unprivileged(need_docker, start_lab):
    from lab.backends.docker import client

    lab = start_lab("docker")

    dc = client()
    try:
        ctrs = dc.containers.list(filters={"label": f"org.twlab.lab={lab.lab_id}"})
        assert sorted(c.name for c in ctrs) == [f"twlab-{lab.lab_id}-{n}" for n in ("client", "router", "server")]
        for ctr in ctrs:
            hc = ctr.attrs["HostConfig"]
            assert hc["Privileged"] is False, ctr.name
            assert {c.removeprefix("CAP_") for c in hc["CapAdd"] or []} == {"NET_ADMIN", "NET_RAW"}, ctr.name
            assert [c.removeprefix("CAP_") for c in hc["CapDrop"] or []] == ["ALL"], ctr.name
            assert "no-new-privileges" in (hc.get("SecurityOpt") or []), ctr.name
            assert not [m for m in ctr.attrs["Mounts"] if "docker.sock" in m.get("Source", "")], ctr.name
            assert hc.get("NetworkMode") not in ("host",), ctr.name
            assert hc.get("PidMode") in ("", None), ctr.name
            # what a process inside really has: exactly NET_ADMIN and NET_RAW
            status = ctr.exec_run(["cat", "/proc/self/status"]).output.decode()
            cap_eff = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("CapEff:")), 16)
            assert cap_eff == (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW), (ctr.name, hex(cap_eff))
            for sock in ("/var/run/docker.sock", "/run/docker.sock"):
                got = ctr.exec_run(["test", "-e", sock])
                assert got.exit_code == 1, f"{ctr.name}: {sock} exists inside"
    finally:
        dc.close()
