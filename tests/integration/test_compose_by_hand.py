"""compose.yaml works on its own: `docker compose up` makes a lab whose client reaches the server
through the router, where no host has a way out, and which lab.cleanup can find by its label; and
making it leaves this machine's IPv6 forwarding as it was (Docker's IPv6 bridge networks would
switch it on: compose.yaml keeps them IPv4 only)."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from lab.backends.docker import DockerBackend, client
from lab.cleanup import find
from lab.image import ensure_image
from lab.topology import load

pytestmark = [pytest.mark.integration, pytest.mark.docker]

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose.yaml"

CONNECT = """
import socket, sys
s = socket.socket()
s.settimeout(5)
try:
    s.connect((sys.argv[1], 9))
    print("connected")
except OSError as exc:
    print(type(exc).__name__)
"""


def sh(*argv: str, env: dict | None = None, check: bool = True) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


HOST_IPV6_FORWARDING = [Path(f"/proc/sys/net/ipv6/conf/{k}/forwarding") for k in ("all", "default")]


def host_ipv6_forwarding() -> list[str]:
    return [p.read_text().strip() if p.exists() else "-" for p in HOST_IPV6_FORWARDING]


def forwarded(router: str) -> int:
    """The router's IP ForwDatagrams counter (/proc/net/snmp inside its namespace)."""
    head, values = [ln.split() for ln in sh("docker", "exec", router, "cat", "/proc/net/snmp").splitlines()
                    if ln.startswith("Ip:")][:2]
    return int(values[head.index("ForwDatagrams")])


@pytest.fixture
def compose_lab(need_docker):
    """A lab made by hand: `docker compose -p twlabtest<random> -f compose.yaml up -d`."""
    lab_id = secrets.token_hex(3)
    dc = client()
    try:
        env = DockerBackend(lab_id).plan(load())       # an image and free subnets, as a run gets
        assert env["TWLAB_IMAGE"] == ensure_image(dc, progress=lambda s: None)
    finally:
        dc.close()
    assert env["TWLAB_LAB"] == lab_id
    project = f"twlabtest{secrets.token_hex(4)}"
    full_env = {**os.environ, **env}
    compose = ["docker", "compose", "-p", project, "-f", str(COMPOSE)]
    forwarding = host_ipv6_forwarding()
    try:
        sh(*compose, "up", "-d", env=full_env)
        ids = {svc: sh(*compose, "ps", "-q", svc, env=full_env).strip() for svc in ("client", "router", "server")}
        assert all(ids.values()), ids
        yield {"env": env, "ids": ids, "lab_id": lab_id, "project": project, "ipv6_forwarding": forwarding}
    finally:
        sh(*compose, "down", "--timeout", "1", env=full_env, check=False)


def routes(ctr: str) -> list[str]:
    return sh("docker", "exec", ctr, "ip", "-4", "route", "show", "table", "all").splitlines()


def test_compose_by_hand(compose_lab):
    env, ids = compose_lab["env"], compose_lab["ids"]
    left, right = env["TWLAB_LEFT"], env["TWLAB_RIGHT"]
    server_ip, client_ip = f"{right}.10", f"{left}.10"

    # each command deletes Docker's default route and adds its own: wait until it has
    want = {"client": f"{right}.0/24 via {left}.2", "server": f"{left}.0/24 via {right}.2", "router": None}
    deadline = time.monotonic() + 30
    while True:
        seen = {name: routes(ctr) for name, ctr in ids.items()}
        settled = all(not any(r.startswith("default") for r in rs) and
                      (want[n] is None or any(r.startswith(want[n]) for r in rs)) for n, rs in seen.items())
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for name, rs in seen.items():
        assert not [r for r in rs if r.startswith("default")], f"{name} has a default route: {rs}"
    assert any(r.startswith(want["client"]) for r in seen["client"]), seen["client"]
    assert any(r.startswith(want["server"]) for r in seen["server"]), seen["server"]

    # the router forwards in its own namespace
    assert sh("docker", "exec", ids["router"], "cat", "/proc/sys/net/ipv4/ip_forward").strip() == "1"
    for name in ("client", "server"):                 # and only there
        assert sh("docker", "exec", ids[name], "cat", "/proc/sys/net/ipv4/ip_forward").strip() == "0", name

    # client -> server:9 is refused: the SYN got there and the RST came back, through the router
    before = forwarded(ids["router"])
    got = sh("docker", "exec", ids["client"], "python3", "-c", CONNECT, server_ip).strip()
    assert got == "ConnectionRefusedError", got
    assert forwarded(ids["router"]) - before >= 2             # the SYN one way, the RST the other
    got = sh("docker", "exec", ids["server"], "python3", "-c", CONNECT, client_ip).strip()
    assert got == "ConnectionRefusedError", got

    # and nothing beyond the lab: an address outside it is unreachable from client and server
    for name in ("client", "server"):
        done = subprocess.run(["docker", "exec", ids[name], "ip", "route", "get", "192.0.2.1"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode != 0 and "unreachable" in done.stderr, (name, done.stdout, done.stderr)

    # this machine's IPv6 forwarding is as it was before `up` (a Docker IPv6 network sets it to 1)
    assert host_ipv6_forwarding() == compose_lab["ipv6_forwarding"]

    # a by-hand lab carries its label, so lab.cleanup finds it (and the guard sees `down` remove it)
    found = find(compose_lab["lab_id"])
    assert len(found.containers) == 3 and len(found.networks) == 2, found
