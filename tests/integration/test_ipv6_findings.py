"""What only IPv6 shows, on both backends, re-derived from the pcaps (not from the report's checks),
as tests/integration/test_lost_ack.py does for IPv4: lost-ack's FIN copies and their ACKs absent at
the server under the drop; the RST answering the FIN where no TIME-WAIT is left (lost-ack with
tcp_max_tw_buckets=0, and tw-buckets); the flow label and traffic class TIME-WAIT's ACKs and the
RSTs carry (reference R-TW-FLOWLABEL), the RST of an orphan's FIN-WAIT-2 mini-socket included
(driven here with the lab's peers: no scenario has it); a v4-mapped client (R-TW-V4MAPPED)."""

from __future__ import annotations

import ipaddress

import pytest

from lab.core import Lab, parse_sysctl
from lab.packets import Segment, read_pcap
from lab.runner import run_scenario
from scenarios._lost_ack_v6 import CLIENT_TCLASS, SERVER_TCLASS
from scenarios.lost_ack import PORT

from .test_lost_ack import from_client, from_server, server_fins
from .test_scenario_tw_buckets import reread

pytestmark = pytest.mark.integration

TW_ZERO = "client:net.ipv4.tcp_max_tw_buckets=0"
DSCP = ~0x03 & 0xFF          # the traffic class less its ECN bits


def failed(report: dict) -> list:
    return [(c["name"], c["observed"]) for c in report["checks"] if c["outcome"] not in ("pass", "n/a")]


def answers_to(fins: list[Segment], at_client: list[Segment]) -> list[Segment]:
    """The client's ACK of each FIN in client.pcap, sent before the next FIN came."""
    out = []
    for i, fin in enumerate(fins):
        until = fins[i + 1].t if i + 1 < len(fins) else float("inf")
        answer = [s for s in from_client(at_client) if s.pure_ack and s.ack == (fin.seq + 1) & 0xFFFFFFFF
                  and fin.t <= s.t < until]
        assert answer, f"FIN #{i} (t={fin.t:.6f}) is not answered in client.pcap"
        out.append(answer[0])
    return out


def v6_addresses(report: dict) -> tuple[str, str]:
    hosts = report["hosts"]
    client, server = (next(iter(hosts[h]["addresses6"].values())) for h in ("client", "server"))
    assert ipaddress.ip_address(client).version == ipaddress.ip_address(server).version == 6
    return client, server


def test_lost_ack_over_ipv6_from_the_pcaps(backend, tmp_path):
    report = run_scenario("lost-ack", backend=backend, artifacts=tmp_path, family=6)
    assert report["verdict"] == "pass", failed(report)
    assert report["family"] == 6 and report["hosts"]["client"]["addresses"] == report["hosts"]["client"]["addresses6"]
    client, server = v6_addresses(report)
    at_server, at_client = read_pcap(tmp_path / "server.pcap"), read_pcap(tmp_path / "client.pcap")
    conn = from_client(at_client) + from_server(at_client)
    assert conn and {(s.src, s.dst) for s in conn} == {(client, server), (server, client)}
    assert all(s.flow_label is not None and s.hop_limit and s.ttl is None for s in conn)
    lifted = report["faults"]["lost-ack"]["removed_at"]

    # the server's FIN, retransmitted with one sequence number, some copies while the drop was on
    fins = server_fins(at_server)
    assert len(fins) >= 3 and len({f.seq for f in fins}) == 1, [s.flags for s in at_server]
    assert any(f.t < lifted for f in fins[1:]), "no FIN was retransmitted while the drop was on"
    fins_at_client = server_fins(at_client)
    assert len(fins_at_client) == len(fins)

    # the client answers every copy; its ACKs under the drop never reach the server, the next does
    acks = answers_to(fins_at_client, at_client)
    under, after = [a for a in acks if a.t < lifted], [a for a in acks if a.t >= lifted]
    assert len(under) >= 2
    assert not [a for a in under if any(s.same_wire(a) for s in at_server)], "an ACK crossed under the drop"
    assert after and any(s.same_wire(after[0]) for s in at_server), "the ACK after the lift did not arrive"
    dropped = read_pcap(tmp_path / "faults.pcap")          # the router logged each one it dropped
    assert dropped and all(d.pure_ack and d.dst == server and d.flow_label is not None for d in dropped)
    for a in under:
        assert any(d.same_wire(a) for d in dropped), f"ACK at {a.t:.6f} not in faults.pcap"

    # the flow label finding: TIME-WAIT's ACKs carry the client's own label and DSCP (its FIN's),
    # not the server's, whose retransmitted FINs came under labels of their own
    own = [s for s in from_client(at_client) if s.has("FIN")][-1]
    assert own.traffic_class & DSCP == CLIENT_TCLASS
    assert {(a.flow_label, a.traffic_class & DSCP) for a in acks} == {(own.flow_label, CLIENT_TCLASS)}
    assert {f.traffic_class & DSCP for f in fins_at_client} == {SERVER_TCLASS}
    assert own.flow_label not in {f.flow_label for f in fins_at_client}
    check = {c["name"]: c for c in report["checks"]}["time-wait-ack-flow-label"]
    assert check["outcome"] == "pass" and check["values"]["own_flow_label"] == own.flow_label


@pytest.mark.parametrize("reflect", [0, 2])
def test_the_rst_without_time_wait_over_ipv6(backend, tmp_path, reflect):
    report = run_scenario("lost-ack", backend=backend, artifacts=tmp_path, family=6,
                          sysctls=[parse_sysctl(TW_ZERO),
                                   parse_sysctl(f"client:net.ipv6.flowlabel_reflect={reflect}")])
    assert report["verdict"] == "pass", failed(report)
    assert report["hosts"]["client"]["sysctls"]["net.ipv6.flowlabel_reflect"] == str(reflect)
    at_client, at_server = read_pcap(tmp_path / "client.pcap"), read_pcap(tmp_path / "server.pcap")
    fins = server_fins(at_client)
    assert fins, "the server's FIN never reached the client"
    rsts = [s for s in from_client(at_client) if s.has("RST") and s.t >= fins[0].t]
    assert rsts and rsts[0].seq == fins[0].ack               # the RST answers that FIN
    assert any(s.same_wire(rsts[0]) for s in at_server), "the RST did not reach the server"
    assert len(server_fins(at_server)) == 1                   # it ended the server's connection
    own = [s for s in from_client(at_client) if s.has("FIN")][-1]
    rst, fin = rsts[0], fins[0]
    assert rst.flow_label is not None and rst.ttl is None
    if reflect & 2:
        assert rst.flow_label == fin.flow_label               # FLOWLABEL_REFLECT_TCP_RESET
    else:
        assert rst.flow_label not in (fin.flow_label, own.flow_label)
    assert rst.traffic_class & DSCP == fin.traffic_class & DSCP == SERVER_TCLASS   # the FIN's DSCP
    assert {c["name"]: c["outcome"] for c in report["checks"]}["rst-flow-label"] == "pass"


def test_tw_buckets_over_ipv6(backend, tmp_path):
    report = run_scenario("tw-buckets", backend=backend, artifacts=tmp_path, family=6)
    assert report["verdict"] == "pass", failed(report)
    reread(report, tmp_path, limit=3)           # ACK from the 3 TIME-WAITs, RST from the 2 without
    assert all(s.flow_label is not None for s in read_pcap(tmp_path / "client.pcap") if PORT in (s.sport, s.dport))


@pytest.mark.parametrize("reflect", [0, 2])
def test_an_orphans_fin_wait_2_resets_with_the_connections_label(backend, tmp_path, reflect):
    """Data reaching the client's orphaned FIN-WAIT-2 (a TIME-WAIT mini-socket) meets a RST from it
    (tcp_timewait_state_process(): TCP_TW_RST; tcp_v6_send_reset() with the mini-socket): its label
    is the connection's (tw_flowlabel, tw_txhash) whatever bit 2 says, its DSCP the data's."""
    settings = [parse_sysctl(f"{h}:net.ipv6.flowlabel_reflect={reflect}") for h in ("client", "server")]
    with Lab(backend=backend, artifacts=tmp_path, sysctls=settings, family=6, port=PORT) as lab:
        server, client = lab.peer("server"), lab.peer("client")
        server.listen("L", PORT, tclass=SERVER_TCLASS)
        cport = client.connect("c", lab.host("server").address, PORT, tclass=CLIENT_TCLASS)["local"][1]
        server.accept("L", as_="s")
        client.close("c")                                           # orphaned: FIN_WAIT2 mini-socket
        lab.wait_for("the client's FIN at the server", lambda: lab.sockets("server", {"CLOSE_WAIT"}), timeout_s=5)
        lab.wait_for("the client's FIN acknowledged", lambda: not lab.sockets("client", {"FIN_WAIT1"}), timeout_s=5)
        server.send("s", b"late data")
        lab.wait_for("the server's connection reset", lambda: not lab.sockets("server", {"CLOSE_WAIT"}),
                     timeout_s=5)
    segs = [s for s in read_pcap(tmp_path / "client.pcap") if cport in (s.sport, s.dport)]
    mine = [s for s in segs if s.sport == cport]
    data = next(s for s in segs if s.dport == cport and s.length > 0)
    rst = next(s for s in mine if s.has("RST") and s.t >= data.t)
    fin = next(s for s in mine if s.has("FIN"))
    assert rst.flow_label == fin.flow_label and {s.flow_label for s in mine} == {fin.flow_label}
    assert rst.traffic_class & DSCP == data.traffic_class & DSCP == SERVER_TCLASS


def test_a_v4_mapped_client_is_answered_in_ipv4(backend, tmp_path):
    report = run_scenario("lost-ack", backend=backend, artifacts=tmp_path, options={"mapped": True})
    assert report["verdict"] == "pass", failed(report)
    assert report["family"] == 4 and report["mapped_client"] is True and report["options"]["mapped"] is True
    at_client = read_pcap(tmp_path / "client.pcap")
    server = str(next(iter(report["hosts"]["server"]["addresses4"].values())))
    fins = server_fins(at_client)
    acks = answers_to(fins, at_client)
    # on the wire the client is IPv4 all along, TIME-WAIT's answers included
    assert len(acks) >= 3 and all(a.ttl is not None and a.flow_label is None and a.dst == server for a in acks)
    assert all(s.ttl is not None for s in from_client(at_client))
    # while sock_diag (AF_INET6) named its TIME-WAIT by the mapped addresses
    tw = [e for e in report["timeline"] if e["kind"] == "state" and e["host"] == "client"
          and e["data"].get("socket", {}).get("state") == "TIME_WAIT"]
    assert tw and all(ipaddress.ip_address(e["data"]["socket"]["dst"]).ipv4_mapped for e in tw)
    outcomes = {c["name"]: c["outcome"] for c in report["checks"]}
    assert outcomes["v4-mapped-answers-over-ipv4"] == "pass" and outcomes["time-wait-ack-flow-label"] == "n/a"
