"""No lab host can open a connection to this machine.

A TCP listener on this machine, on every address (0.0.0.0 and ::, a port of the test's own), and
from each lab host (client, router, server; both backends) a connection attempt to every address
this machine has (`ip -o addr`: eth0, docker0, other labs' bridges, IPv6 link-local ones on each
of the lab host's own interfaces): with the host's routes as the lab made them, after the host
adds a default route itself (`ip route add default dev ethN`, `... via` a neighbour-looking
address: NET_ADMIN allows both), and with every host's default route at once. None may connect,
and no packet to the port may reach any interface of this machine (tcpdump in this machine's
namespace sees every interface; it only reads). Loopback is left out of that count: only this
namespace's own sockets send on lo, and a packet from a lab host would first arrive on a veth or
bridge, where it is counted. (CI once saw this machine's own control probe, fd00::2 to fd00::2,
send a FIN on lo after the sniffer had started.)

The probe is shown to work both ways: this machine connects to its own listener on every address
it lists, and every lab host connects to a listener in the server (in every route state).
"""

from __future__ import annotations

import ipaddress
import json
import select
import socket
import subprocess
import sys
import threading
import time

import pytest

from lab.core import Lab
from lab.nsops import inside

pytestmark = pytest.mark.integration

BOUND_S = 2.0      # how long each batch of connection attempts may wait for an answer

PROBE = r"""
import errno, json, select, socket, sys, time
targets, port, bound = json.loads(sys.argv[1])
results, pending = {}, {}
for target in targets:
    addr, _, scope = target.partition("%")
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    try:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setblocking(False)
        where = (addr, port, 0, socket.if_nametoindex(scope) if scope else 0) \
            if family == socket.AF_INET6 else (addr, port)
        err = s.connect_ex(where)
    except OSError as exc:
        results[target] = errno.errorcode.get(exc.errno, str(exc))
        continue
    if err == errno.EINPROGRESS:
        pending[s] = target
    else:
        results[target] = "connected" if err == 0 else errno.errorcode.get(err, str(err))
deadline = time.monotonic() + bound
while pending and time.monotonic() < deadline:
    _, ready, _ = select.select([], list(pending), [], max(0.0, deadline - time.monotonic()))
    for s in ready:
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        results[pending.pop(s)] = "connected" if err == 0 else errno.errorcode.get(err, str(err))
for target in pending.values():
    results[target] = "no answer"
print(json.dumps(results))
"""


class Listener:
    """TCP listeners on 0.0.0.0 and :: (same port) in this machine's namespace, recording every
    connection they accept."""

    def __init__(self) -> None:
        self.v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.v4.bind(("0.0.0.0", 0))
        self.port = self.v4.getsockname()[1]
        self.v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        self.v6.bind(("::", self.port))
        for s in (self.v4, self.v6):
            s.listen(64)
            s.setblocking(False)
        self.accepted: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.v4, self.v6], [], [], 0.1)
            for s in ready:
                try:
                    conn, peer = s.accept()
                except BlockingIOError:
                    continue
                self.accepted.append(str(peer[0]))
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.v4.close()
        self.v6.close()


class Sniffer:
    """tcpdump on every interface of this machine's namespace (read only), for the port; what it
    saw on lo is this namespace's own traffic (see the module's docstring) and is set aside."""

    def __init__(self, port: int) -> None:
        self._proc = subprocess.Popen(
            ["tcpdump", "-i", "any", "-n", "-l", "--immediate-mode", f"tcp dst port {port}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        said = ""
        deadline = time.monotonic() + 10
        while "listening on" not in said and time.monotonic() < deadline:
            line = self._proc.stderr.readline()
            if not line:
                break
            said += line
        assert "listening on" in said, f"tcpdump did not start: {said}"

    def stop(self) -> list[str]:
        self._proc.terminate()
        out, _ = self._proc.communicate(timeout=10)
        return not_on_lo(out)


def not_on_lo(tcpdump_text: str) -> list[str]:
    """tcpdump -i any lines ("TIME IFNAME In|Out ...") but those on lo."""
    lines = [line.split() for line in tcpdump_text.splitlines()]
    return [" ".join(words) for words in lines if len(words) > 1 and words[1] != "lo"]


def this_machines_addresses() -> dict[str, str]:
    """Every address of this machine's namespace but loopback ones -> its interface."""
    out = {}
    text = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    for line in text.splitlines():
        words = line.split()
        ifname, addr = words[1], ipaddress.ip_interface(words[3]).ip
        if not addr.is_loopback:
            out[str(addr)] = ifname
    return out


def probe(argv_prefix: list[str], targets: list[str], port: int) -> dict[str, str]:
    done = subprocess.run([*argv_prefix, "-c", PROBE, json.dumps([targets, port, BOUND_S])],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def in_host(host, *argv: str) -> subprocess.CompletedProcess:
    """Run a command as the lab host itself (docker exec into the container, or nsenter)."""
    return subprocess.run(host.argv(*argv), capture_output=True, text=True, timeout=60)


def route_states(lab: Lab, name: str) -> list[tuple[str, list[list[str]]]]:
    """(what, the commands the host runs to get there): its own routes, then a default route
    of its own through each of its interfaces, on-link and via a neighbour-looking address
    (the subnet's first address: Docker's gateway on a Docker network)."""
    host = lab.hosts[name]
    states: list[tuple[str, list[list[str]]]] = [("its own routes", [])]
    for net in host.addresses:
        ifname = host.ifname(net)
        gateway = str(next(lab.topology.networks[net].subnet.hosts()))
        states.append((f"default dev {ifname}", [["ip", "route", "add", "default", "dev", ifname],
                                                 ["ip", "-6", "route", "add", "default", "dev", ifname]]))
        states.append((f"default via {gateway}", [["ip", "route", "add", "default", "via", gateway],
                                                  ["ip", "-6", "route", "add", "default", "via", "fe80::1",
                                                   "dev", ifname]]))
    return states


def all_defaults(lab: Lab) -> dict[str, list[list[str]]]:
    """Every host with a default route at once: the ends via the router, the router via the
    first address of its first network."""
    router = lab.hosts["router"]
    out = {}
    for name, host in lab.hosts.items():
        net = next(iter(host.addresses))
        via = str(router.addresses[net]) if name != "router" else \
            str(next(lab.topology.networks[net].subnet.hosts()))
        out[name] = [["ip", "route", "add", "default", "via", via]]
    return out


def set_routes(lab: Lab, commands: dict[str, list[list[str]]]) -> None:
    for name, argvs in commands.items():
        for argv in argvs:
            done = in_host(lab.hosts[name], *argv)
            # IPv6 may be off in a host; the IPv4 route must go in: that is the point of the state
            assert done.returncode == 0 or "-6" in argv, (name, argv, done.stderr)


def clear_defaults(lab: Lab, names) -> None:
    for name in names:
        for family in ("-4", "-6"):
            in_host(lab.hosts[name], "ip", family, "route", "del", "default")


def targets_for(lab: Lab, name: str, addresses: dict[str, str]) -> list[str]:
    host = lab.hosts[name]
    out = []
    for addr in addresses:
        if ipaddress.ip_address(addr).is_link_local:      # only on a link: try each of its own
            out += [f"{addr}%{host.ifname(net)}" for net in host.addresses] if ":" in addr else [addr]
        else:
            out.append(addr)
    return out


def test_not_on_lo_keeps_every_other_interface():
    text = ("16:01:17.985741 lo    In  IP6 fd00::2.60126 > fd00::2.53597: Flags [F.], length 0\n"
            "16:01:18.000001 br-1a2b In  IP 10.0.0.2.40000 > 172.17.0.1.53597: Flags [S], length 0\n"
            "16:01:18.000002 eth0  In  IP 10.0.0.2.40000 > 10.1.0.5.53597: Flags [S], length 0\n\n")
    assert [line.split()[1] for line in not_on_lo(text)] == ["br-1a2b", "eth0"]


@pytest.fixture
def listener():
    lst = Listener()
    try:
        yield lst
    finally:
        lst.close()


def test_no_lab_host_reaches_this_machine(backend, tmp_path, listener):
    before = this_machines_addresses()
    with Lab(backend=backend, artifacts=tmp_path / "lab", capture=False) as lab:
        addresses = {**before, **this_machines_addresses()}    # and whatever the lab added here
        assert addresses, "this machine has no address but loopback ones?"
        # the probe works: this machine reaches its own listener on every address it has (a
        # new interface's IPv6 address is usable once duplicate address detection is done)
        own = [f"{a}%{i}" if ipaddress.ip_address(a).is_link_local and ":" in a else a
               for a, i in addresses.items()]
        deadline = time.monotonic() + 15
        while True:
            got = probe([sys.executable], own, listener.port)
            if set(got.values()) == {"connected"} or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert set(got.values()) == {"connected"}, got
        accepted_by_controls = len(listener.accepted)
        server = lab.hosts["server"]
        with inside(server.nspath):                     # a listener in the lab: the probe's control
            control = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        control.bind(("0.0.0.0", listener.port))
        control.listen(64)
        sniffer = Sniffer(listener.port)
        leaks, unreached, tried = [], [], 0
        try:
            plan = [(name, what, {name: cmds}) for name in lab.hosts for what, cmds in route_states(lab, name)]
            plan.append(("*", "every host with a default route", all_defaults(lab)))
            for who, what, commands in plan:
                set_routes(lab, commands)
                try:
                    for name in (lab.hosts if who == "*" else [who]):
                        host = lab.hosts[name]
                        mine = targets_for(lab, name, addresses)
                        got = probe(host.argv(*host.python), [*mine, str(server.address)], listener.port)
                        tried += len(mine)
                        if got[str(server.address)] != "connected":
                            unreached.append((name, what, got[str(server.address)]))
                        leaks += [(name, what, t, got[t]) for t in mine if got[t] == "connected"]
                finally:
                    clear_defaults(lab, commands)
        finally:
            arrived = sniffer.stop()
            control.close()
    assert tried > 0
    assert not unreached, f"the probe failed to reach the lab's own listener: {unreached}"
    assert not leaks, f"lab hosts connected to this machine: {leaks}"
    assert not arrived, "packets from the lab reached this machine's interfaces:\n" + "\n".join(arrived[:20])
    assert len(listener.accepted) == accepted_by_controls, listener.accepted[accepted_by_controls:]
