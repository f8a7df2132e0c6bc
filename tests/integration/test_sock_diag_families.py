"""sock_diag over a real kernel, for both address families: in a throwaway network namespace (its
loopback only; removed afterwards), a connection is opened and closed, and lab.observe.SocketView
of the family must list every socket of it by its addresses as the lab writes them, follow the
client into TIME-WAIT, find each by its 4-tuple and find nothing for a 4-tuple nobody uses."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import time

import pytest

from lab.backends.base import Host
from lab.nsops import inside
from lab.observe import SocketView

pytestmark = pytest.mark.integration

PORT = 5000
# a unique local address besides ::1, so the compressed text of a longer address is checked too
ULA = "fd77:1a2b:0:1::10"


@pytest.fixture
def netns():
    name = f"twtest-diag-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", name, "addr", "add", f"{ULA}/128", "dev", "lo", "nodad"], check=True)
        subprocess.run(["ip", "-n", name, "addr", "add", "10.77.99.10/32", "dev", "lo"], check=True)
        yield Host(name=name, spec=None, nspath=f"/run/netns/{name}", exec_prefix=[], python=[])
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def poll(what, until, timeout_s: float = 10.0):
    """what() until until(result), polling; the last result (the test asserts on it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = what()
        if until(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.01)


@pytest.mark.parametrize("family, server_addr, client_addr", [
    (4, "127.0.0.1", "127.0.0.1"), (4, "10.77.99.10", "10.77.99.10"),
    (6, "::1", "::1"), (6, ULA, ULA),
], ids=["v4-loopback", "v4-address", "v6-loopback", "v6-ula"])
def test_a_connection_and_its_time_wait_round_trip(netns, family, server_addr, client_addr):
    af = socket.AF_INET6 if family == 6 else socket.AF_INET
    view = SocketView(netns, family)
    with inside(netns.nspath):
        srv = socket.socket(af, socket.SOCK_STREAM)
        cli = socket.socket(af, socket.SOCK_STREAM)
    try:
        srv.bind((server_addr, PORT))
        srv.listen()
        cli.bind((client_addr, 0))
        cli.connect((server_addr, PORT))
        acc, _ = srv.accept()
        cport = cli.getsockname()[1]
        text = str(ipaddress.ip_address(server_addr))          # as the lab writes addresses
        listing = view.sockets(port=PORT)
        assert {(s.state, s.src, s.sport, s.dst, s.dport) for s in listing} == {
            ("LISTEN", text, PORT, "::" if family == 6 else "0.0.0.0", 0),
            ("ESTABLISHED", text, cport, text, PORT),
            ("ESTABLISHED", text, PORT, text, cport)}
        key = (text, cport, text, PORT)
        assert view.lookup(key).state == "ESTABLISHED" and view.lookup(key).inode > 0
        cli.close()                                            # the client closes first
        acc.close()
        tw = poll(lambda: view.lookup(key), lambda s: s is not None and s.state == "TIME_WAIT")
        assert (tw.state, tw.timer, tw.key) == ("TIME_WAIT", "timewait", key)
        assert 0 < tw.expires_ms <= 60_000
        assert [s.state for s in view.sockets(port=cport)] == ["TIME_WAIT"]
        # nobody's 4-tuple: the kernel's lookup would fall back to the listener; SocketView says None
        assert view.lookup((text, cport + 1 if cport < 65535 else cport - 1, text, PORT)) is None
        # the other family's view sees none of it
        other = SocketView(netns, 10 - family)
        assert [s for s in other.sockets(port=PORT) if s.state != "LISTEN"] == []
        other.close()
    finally:
        srv.close()
        cli.close()
        view.close()


def test_a_v4_mapped_client_is_an_ipv6_socket(netns):
    """An AF_INET6 socket connected to ::ffff:127.0.0.1: it and its TIME-WAIT are listed by the
    AF_INET6 dump only, under their v4-mapped addresses, and found by lookup under them (the
    kernel looks a v4-mapped 4-tuple up in the IPv4 tables: inet_diag_find_one_icsk())."""
    v4, v6 = SocketView(netns, 4), SocketView(netns, 6)
    with inside(netns.nspath):
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        cli = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        srv.bind(("127.0.0.1", PORT))
        srv.listen()
        cli.connect(("::ffff:127.0.0.1", PORT))
        acc, _ = srv.accept()
        cport = cli.getsockname()[1]
        mapped = str(ipaddress.ip_address("::ffff:127.0.0.1"))
        key = (mapped, cport, mapped, PORT)
        assert [(s.state, s.key) for s in v6.sockets(port=PORT)] == [("ESTABLISHED", key)]
        assert {s.state for s in v4.sockets(port=PORT)} == {"LISTEN", "ESTABLISHED"}   # the server's
        cli.close()
        acc.close()
        tw = poll(lambda: v6.lookup(key), lambda s: s is not None and s.state == "TIME_WAIT")
        assert tw.state == "TIME_WAIT"
        assert v4.lookup(("127.0.0.1", cport, "127.0.0.1", PORT)) is None
    finally:
        srv.close()
        cli.close()
        v4.close()
        v6.close()
