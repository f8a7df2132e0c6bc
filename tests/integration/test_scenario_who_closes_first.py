"""who-closes-first on both backends: the verdict, and the story read again from the pcaps and the
sock_diag snapshots in the report (not from the checks), so a check passing for the wrong reason
is caught."""

from __future__ import annotations

import json

import pytest

from lab.core import parse_sysctl
from lab.packets import Segment, read_pcap
from lab.runner import run_scenario
from scenarios.who_closes_first import PORT

pytestmark = pytest.mark.integration


def conn(segs: list[Segment], port: int) -> list[Segment]:
    return [s for s in segs if {s.sport, s.dport} == {port, PORT}]


def fins(segs: list[Segment], port: int, from_port: int) -> list[Segment]:
    return [s for s in conn(segs, port) if s.sport == from_port and s.has("FIN")]


def assert_passed(report: dict, tmp_path) -> None:
    assert report["verdict"] == "pass", [c["observed"] for c in report["checks"] if not c["passed"]]
    assert report["error"] is None
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["verdict"] == "pass"
    for c in on_disk["checks"]:
        assert c["citation"] and c["values"], c["name"]


def test_who_closes_first_default(backend, tmp_path):
    report = run_scenario("who-closes-first", backend=backend, artifacts=tmp_path)
    assert_passed(report, tmp_path)
    cases = report["facts"]["cases"]
    at_client, at_server = read_pcap(tmp_path / "client.pcap"), read_pcap(tmp_path / "server.pcap")

    # 1. client first: the client's FIN leaves before the server's, which acknowledges it
    p = cases["client-first"]["client_port"]
    cf, sf = fins(at_client, p, p)[0], fins(at_server, p, PORT)[0]
    assert cf.t < sf.t and sf.ack == (cf.seq + 1) & 0xFFFFFFFF
    after = cases["client-first"]["sockets_after"]
    assert [s["state"] for s in after["client"]] == ["TIME_WAIT"] and after["server"] == []

    # 2. server first: the mirror image
    p = cases["server-first"]["client_port"]
    sf, cf = fins(at_server, p, PORT)[0], fins(at_client, p, p)[0]
    assert sf.t < cf.t and cf.ack == (sf.seq + 1) & 0xFFFFFFFF
    after = cases["server-first"]["sockets_after"]
    assert [s["state"] for s in after["server"]] == ["TIME_WAIT"] and after["client"] == []

    # 3. simultaneous: each end received the other's FIN while its own was unacknowledged
    p = cases["simultaneous"]["client_port"]
    my_fin = {"client": fins(at_client, p, p)[0], "server": fins(at_server, p, PORT)[0]}
    their_fin = {"client": fins(at_client, p, PORT)[0], "server": fins(at_server, p, p)[0]}
    for host in ("client", "server"):
        mine, theirs = my_fin[host], their_fin[host]
        assert mine.t < theirs.t, host                      # sent before the peer's arrived
        assert theirs.ack == mine.seq, host                 # the peer's FIN does not cover ours
        own = at_client if host == "client" else at_server
        peer_port = PORT if host == "client" else p
        early = [s for s in conn(own, p) if s.sport == peer_port and s.t < theirs.t and s.has("ACK")
                 and 0 < (s.ack - mine.seq) & 0xFFFFFFFF < 1 << 31]
        assert not early, f"{host}: its FIN was acknowledged before the peer's FIN came"
    # the injected FINs are the held originals, byte for byte the segments each end sent
    held = [s for s in read_pcap(tmp_path / "faults.pcap") if s.has("FIN")]
    assert any(h.same_wire(my_fin["client"]) for h in held) and any(h.same_wire(my_fin["server"]) for h in held)
    closing = cases["simultaneous"]["sockets_closing"]
    assert [s["state"] for s in closing["client"]] == ["CLOSING"]
    assert [s["state"] for s in closing["server"]] == ["CLOSING"]
    after = cases["simultaneous"]["sockets_after"]
    assert [s["state"] for s in after["client"]] == ["TIME_WAIT"]
    assert [s["state"] for s in after["server"]] == ["TIME_WAIT"]


def test_who_closes_first_client_without_time_wait_room(backend, tmp_path):
    """tcp_max_tw_buckets=0 on the client: where the client would hold TIME-WAIT it cannot; the
    expectation follows and the verdict still passes."""
    report = run_scenario("who-closes-first", backend=backend, artifacts=tmp_path,
                          sysctls=[parse_sysctl("client:net.ipv4.tcp_max_tw_buckets=0")])
    assert_passed(report, tmp_path)
    cases = report["facts"]["cases"]
    assert cases["client-first"]["sockets_after"]["client"] == []
    assert [s["state"] for s in cases["simultaneous"]["sockets_after"]["server"]] == ["TIME_WAIT"]
    assert cases["simultaneous"]["sockets_after"]["client"] == []
    assert report["counters"]["client"].get("TcpExtTCPTimeWaitOverflow", 0) >= 2
