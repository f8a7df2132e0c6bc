"""lab/peer_agent.py driven through lab.peer.Peer, run as a real subprocess on this machine's
loopback (a Host whose "namespace" is our own and whose exec prefix is empty). No root needed."""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
import threading
import time

import pytest

from lab.backends.base import Host
from lab.errors import PeerError
from lab.peer import Peer
from lab.timeline import Timeline

LOOPBACK = "127.0.0.1"


def local_host(python=None) -> Host:
    return Host(name="local", spec=None, nspath="/proc/self/ns/net", exec_prefix=[],
                python=python or [sys.executable, "-u"])


@pytest.fixture
def peers():
    """Make peers; every one is stopped at the end, whatever the test did to it."""
    made: list[Peer] = []
    timeline = Timeline()

    def make(host: Host | None = None, **kw) -> Peer:
        p = Peer(host or local_host(), timeline, **kw)
        made.append(p)
        return p

    make.timeline = timeline   # type: ignore[attr-defined]
    yield make
    for p in made:
        p.stop()
        assert p._proc.poll() is not None, "a peer outlived stop()"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def test_peer_starts_and_reports_its_pid(peers):
    p = peers()
    assert isinstance(p.pid, int) and p.pid > 0
    assert os.path.exists(f"/proc/{p.pid}")


def test_conversation_over_loopback(peers):
    server, client = peers(), peers()
    t_before = time.time()
    lis = server.listen("L", 0, addr=LOOPBACK)
    assert lis.ok and lis["local"][0] == LOOPBACK
    port = lis["local"][1]
    assert port > 0

    conn = client.connect("c", LOOPBACK, port)
    assert conn.ok and conn["state"] == "ESTABLISHED"
    assert conn["remote"] == [LOOPBACK, port] and conn["so_error"] == 0

    acc = server.accept("L", as_="conn")
    assert acc.ok and acc["state"] == "ESTABLISHED"
    assert acc["remote"] == conn["local"] and acc["local"] == [LOOPBACK, port]

    sent = client.send("c", b"hello\x00\xff")               # binary-safe (base64 on the wire)
    assert sent.ok and sent["sent"] == 7
    got = server.recv("conn")
    assert got.ok and got.data == b"hello\x00\xff" and got["len"] == 7

    shut = client.shutdown("c", "wr")                        # FIN ->
    assert shut.ok and shut["state"] in ("FIN_WAIT1", "FIN_WAIT2")
    eof = server.recv("conn")
    assert eof.ok and eof["eof"] is True and eof.data == b""
    assert server.info("conn")["state"] == "CLOSE_WAIT"

    closed = server.close("conn")                            # <- FIN
    assert closed.ok and closed["state_before"] == "CLOSE_WAIT"
    assert client.recv("c")["eof"] is True
    assert client.close("c")["state_before"] in ("CLOSE", "TIME_WAIT")
    assert server.close("L")["state_before"] == "LISTEN"

    # every step is on the timeline, stamped by the peer's clock, in the order it happened
    events = peers.timeline.events(kind="peer", host="local")
    assert [e.text.split("(")[0] for e in events] == [
        "listen", "connect", "accept", "send", "recv", "shutdown", "recv", "info", "close",
        "recv", "close", "close"]
    assert all(e.text.endswith("-> ok") for e in events)
    assert all(t_before <= e.t <= time.time() for e in events)
    assert [r.op for r in server.results][:3] == ["listen", "accept", "recv"]


def test_recv_timeout_is_a_result(peers):
    server, client = peers(), peers()
    port = server.listen("L", 0, addr=LOOPBACK)["local"][1]
    client.connect("c", LOOPBACK, port)
    server.accept("L", as_="conn")
    res = server.recv("conn", timeout_s=0.1)
    assert res.ok and res["timeout"] is True and res.data == b""


def test_accept_timeout_is_an_errno_result(peers):
    p = peers()
    p.listen("L", 0, addr=LOOPBACK)
    res = p.accept("L", as_="conn", timeout_s=0.2)          # nobody connects
    assert not res.ok and res.errno == errno.ETIMEDOUT and res.error == "ETIMEDOUT"
    assert p.info("L")["state"] == "LISTEN"


def test_bind_conflict_is_an_errno_result(peers):
    p = peers()
    port = free_port()
    first = p.listen("A", port, addr=LOOPBACK)
    assert first.ok
    second = p.call("bind", sock="B", addr=LOOPBACK, port=port)
    assert not second.ok
    assert second.errno == errno.EADDRINUSE and second.error == "EADDRINUSE"
    assert second.message                                    # the strerror text
    assert second.to_json()["error"] == "EADDRINUSE"
    assert "-> EADDRINUSE" in peers.timeline.events(kind="peer")[-1].text
    # the peer keeps serving, and the first socket still listens
    assert p.info("A")["state"] == "LISTEN"


def test_connection_refused_is_an_errno_result(peers):
    res = peers().connect("c", LOOPBACK, free_port())
    assert not res.ok and res.errno == errno.ECONNREFUSED and res.error == "ECONNREFUSED"


def test_unknown_op_is_an_error_result(peers):
    p = peers()
    res = p.call("frobnicate", sock="x")
    assert not res.ok and res.errno is None
    assert res.error == "KeyError" and "frobnicate" in res.message
    assert p.listen("L", 0, addr=LOOPBACK).ok               # still serving


def test_unknown_socket_is_an_error_result(peers):
    res = peers().send("nope", b"x")
    assert not res.ok and res.errno is None and "no socket named 'nope'" in res.message


def test_killed_peer_is_a_peer_error(peers):
    p = peers()
    os.kill(p.pid, signal.SIGKILL)
    p._proc.wait()
    with pytest.raises(PeerError, match=r"^local: the peer (is gone|died)"):
        p.info("x")


def test_peer_killed_during_a_step_is_a_peer_error(peers):
    p = peers()
    p.listen("L", 0, addr=LOOPBACK)
    pid = p.pid
    killer = threading.Timer(0.3, os.kill, (pid, signal.SIGKILL))
    killer.start()
    try:
        with pytest.raises(PeerError, match=r"'accept'"):
            p.accept("L", as_="conn", timeout_s=30)          # nobody connects: blocks until killed
    finally:
        killer.cancel()


def test_silent_peer_is_a_peer_error_and_is_killed(peers):
    p = peers()
    p.listen("L", 0, addr=LOOPBACK)
    p.timeout_s = 0.3          # how long the driver waits for an answer (set after the start)
    # the peer's own accept waits its default 10 s for a connection that never comes
    with pytest.raises(PeerError, match=r"did not answer 'accept' within 0.3 s"):
        p.call("accept", sock="L", **{"as": "conn"})
    assert p._proc.poll() is not None


def test_peer_that_cannot_start(peers):
    with pytest.raises(PeerError, match=r"^local: "):
        peers(local_host(python=["/nonexistent/python3", "-u"]))


def test_peer_that_dies_at_start(peers):
    with pytest.raises(PeerError, match=r"^local: the peer died during 'start'"):
        peers(local_host(python=[sys.executable, "-c", "import sys; sys.exit(3)"]))


def test_stop_ends_the_peer(peers):
    p = peers()
    p.listen("L", 0, addr=LOOPBACK)
    p.stop()
    assert p._proc.returncode == 0
    assert not os.path.exists(f"/proc/{p.pid}") or open(f"/proc/{p.pid}/stat").read().split()[2] == "Z"


# -- many connections at once ----------------------------------------------------------------------

def test_many_connections_open_close_and_close_on_eof(peers):
    server, client = peers(), peers()
    port = free_port()
    server.listen("L", port, backlog=32)
    opened = client.connect_many("c", 20, LOOPBACK, port, timeout_s=10)
    assert opened.ok and opened["failed"] == []
    conns = opened["connections"]
    assert [c["name"] for c in conns] == [f"c{i}" for i in range(20)]
    assert all(c["started"] <= c["done"] for c in conns)
    assert len({c["local"][1] for c in conns}) == 20
    accepted = server.accept_many("L", "s", 20, timeout_s=10)
    assert accepted["missing"] == 0
    assert sorted(c["remote"][1] for c in accepted["connections"]) == sorted(c["local"][1] for c in conns)
    client.send("c3", b"abc")                   # bytes before the FIN are counted, not an EOF
    closed = client.close_many([f"c{i}" for i in range(20)])
    assert [c["state_before"] for c in closed["closed"]] == ["ESTABLISHED"] * 20
    names = [c["name"] for c in accepted["connections"]]
    served = server.close_on_eof(names, timeout_s=10)
    assert served["open"] == []
    by_remote = {a["name"]: a["remote"][1] for a in accepted["connections"]}
    c3_port = conns[3]["local"][1]
    for c in served["connections"]:
        assert c["eof"] <= c["closed"] and "error" not in c
        assert c["bytes"] == (3 if by_remote[c["name"]] == c3_port else 0)
    # the sockets are gone from the peer: closing again is an error, not a crash
    assert not server.close("s0").ok


def test_connect_many_reports_refusals_and_close_on_eof_times_out(peers):
    client = peers()
    port = free_port()                          # nothing listens there
    res = client.connect_many("c", 3, LOOPBACK, port, timeout_s=5)
    assert res["failed"] == ["c0", "c1", "c2"]
    assert {c["error"] for c in res["connections"]} == {"ECONNREFUSED"}
    server, other = peers(), peers()
    server.listen("L", port)
    other.connect_many("k", 1, LOOPBACK, port, timeout_s=5)
    server.accept_many("L", "s", 1, timeout_s=5)
    t = time.monotonic()
    served = server.close_on_eof(["s0"], timeout_s=0.3)   # the peer never closes
    assert served["open"] == ["s0"] and "eof" not in served["connections"][0]
    assert time.monotonic() - t < 5
    missing = server.accept_many("L", "x", 2, timeout_s=0.2)
    assert missing["missing"] == 2 and missing["connections"] == []


def test_a_peer_launched_without_waiting_says_hello_when_first_asked(peers):
    """A lab launches its ends' peers while its captures start (lab.core.Lab._launch_peers): the
    agent is running, its hello read only by ready(), once; then it answers steps as any peer."""
    p = peers(wait=False)
    assert p.pid is None and p._proc.poll() is None
    assert p.ready() is p and isinstance(p.pid, int)
    pid = p.pid
    assert p.ready().pid == pid                  # a second ready() reads nothing more
    port = free_port()
    assert p.listen("L", port).ok


def test_peers_asked_to_exit_together_all_end(peers):
    """Tear-down asks every peer to exit before it waits for any (lab.teardown)."""
    group = [peers(), peers(), peers()]
    for p in group:
        p.ask_to_exit()
        p.ask_to_exit()                          # twice is harmless
    for p in group:
        p.stop()
        assert p._proc.returncode == 0


def test_a_peer_launched_without_waiting_that_cannot_start_fails_when_asked(peers):
    p = peers(host=local_host(python=[sys.executable, "-c", "import sys; sys.exit(3)", "--"]), wait=False)
    with pytest.raises(PeerError, match="the peer died during 'start'"):
        p.ready()
