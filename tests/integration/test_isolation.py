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
    # and the ends do not forward (a new namespace inherits this machine's ip_forward)
    for name in ("client", "server"):
        assert_no_forwarding(lab, name)


def assert_no_forwarding(lab, name: str) -> None:
    """Forwarding is off in that host, IPv4 and (where the kernel has it) IPv6, as read inside
    its namespace and as the lab reports it (report.json's hosts.*.sysctls)."""
    nspath = lab.hosts[name].nspath
    assert in_ns(nspath, "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "0", name
    assert lab.sysctls[name]["net.ipv4.ip_forward"] == "0", name
    if Path("/proc/sys/net/ipv6/conf/all/forwarding").exists():
        assert in_ns(nspath, "cat", "/proc/sys/net/ipv6/conf/all/forwarding").stdout.strip() == "0", name
        assert lab.sysctls[name]["net.ipv6.conf.all.forwarding"] == "0", name


def test_every_host_has_its_own_namespace(lab):
    mine = Path("/proc/self/ns/net").stat().st_ino
    inodes = {name: Path(h.nspath).stat().st_ino for name, h in lab.hosts.items()}
    assert mine not in inodes.values()
    assert len(set(inodes.values())) == 3, inodes


def test_a_lab_makes_nothing_in_the_host_namespace(backend, start_lab):
    """On both backends the links are veth pairs between the lab's own namespaces: no bridge,
    no veth end, no address of the lab in this machine's namespace (the docker backend's
    containers have Docker's "none" network)."""
    before = host_link_names()
    lab = start_lab(backend)
    # (a by-hand Docker lab someone starts meanwhile adds br-*/veth* here; ours would be ethN/pN/br0)
    new = host_link_names() - before
    assert all(n.startswith(("br-", "veth")) for n in new), new
    if backend == "netns":
        assert {Path(h.nspath).name for h in lab.hosts.values()} == {
            f"twlab-{lab.lab_id}-{n}" for n in ("client", "router", "server")}
        assert {Path(h.nspath).parent for h in lab.hosts.values()} == {Path("/run/netns")}
    else:
        from lab.backends.docker import client

        dc = client()
        try:
            for name in ("client", "router", "server"):
                ctr = dc.containers.get(f"twlab-{lab.lab_id}-{name}")
                assert ctr.attrs["HostConfig"]["NetworkMode"] == "none", name
                assert set(ctr.attrs["NetworkSettings"]["Networks"]) == {"none"}, name
        finally:
            dc.close()


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


CONNECT = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5); print('connected')"


def test_a_network_of_three_gets_a_switch_of_its_own(backend, tmp_path):
    """Three hosts on one network: a bridge in a namespace of the lab's own, on both backends;
    the hosts reach each other through it, and no interface of it is in this machine's."""
    import socket
    import sys

    from lab.nsops import inside

    before = host_link_names()
    compose = Path(__file__).resolve().parents[1] / "data" / "topology-switch" / "compose.yaml"
    with Lab(backend=backend, artifacts=tmp_path, compose=compose, capture=False) as lab:
        switch = f"/run/netns/twlab-{lab.lab_id}-sw-lan"
        ports = in_ns(switch, "ip", "-o", "link", "show", "master", "br0")
        assert ports.returncode == 0 and len(ports.stdout.splitlines()) == 3, ports
        server = lab.hosts["server"]
        with inside(server.nspath):
            listener = socket.socket()
        try:
            listener.bind((str(server.address), 0))
            listener.listen()
            port = str(listener.getsockname()[1])
            for name in ("client", "router"):
                done = in_ns(lab.hosts[name].nspath, sys.executable, "-c", CONNECT, str(server.address), port)
                assert done.stdout.strip() == "connected", (name, done.stderr)
        finally:
            listener.close()
        new = host_link_names() - before
        assert all(n.startswith(("br-", "veth")) for n in new), new    # (someone else's Docker lab)
        # this compose file says nothing of ip_forward for them: the lab turns it off anyway
        for name in ("client", "server"):
            assert_no_forwarding(lab, name)
        assert lab.sysctls["router"]["net.ipv4.ip_forward"] == "1"
