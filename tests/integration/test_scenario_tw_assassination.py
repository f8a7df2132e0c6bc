"""tw-assassination on both backends: default (tcp_rfc1337=0: the RST kills the client's TIME-WAIT)
and flipped (client tcp_rfc1337=1: it survives). Besides the verdict, RFC 1337's figure 1 is read
again from the pcaps: the old duplicate (a server data segment seen twice at the client), the
client's ACK of SND.NXT/RCV.NXT, the server's RST with seq = that ACK's ack; and the wire's own
verdict on the TIME-WAIT: the same segment replayed once more after the RST is answered by the
client with a RST (no socket: assassinated) or with TIME-WAIT's ACK (it survived).
"""

from __future__ import annotations

import pytest

from lab.core import parse_sysctl
from lab.packets import read_pcap
from lab.runner import run_scenario
from scenarios.tw_assassination import CLIENT_PORT, OLD_LEN, PORT

pytestmark = pytest.mark.integration

M32 = 1 << 32


def failed(report: dict) -> list:
    return [(c["name"], c["observed"]) for c in report["checks"] if not c["passed"]]


def figure_1(artifacts) -> dict:
    """Segments 5.1, 5.2, 5.3 as the client's and server's captures saw them."""
    at_client, at_server = read_pcap(artifacts / "client.pcap"), read_pcap(artifacts / "server.pcap")
    mine = [s for s in at_client if {s.sport, s.dport} == {CLIENT_PORT, PORT}]
    data = [s for s in mine if s.sport == PORT and s.length == OLD_LEN]
    assert len(data) == 3, [(s.seq, s.length) for s in data]
    first, dup, probe = data                                          # 5.1, then 5.1 again: the probe
    assert (first.seq, first.ack, first.tsval, first.payload) == (probe.seq, probe.ack, probe.tsval, probe.payload)
    assert (first.seq, first.ack, first.tsval, first.payload) == (dup.seq, dup.ack, dup.tsval, dup.payload)
    fin_c = next(s for s in mine if s.sport == CLIENT_PORT and s.has("FIN"))
    fin_s = next(s for s in mine if s.sport == PORT and s.has("FIN"))
    assert fin_c.t < fin_s.t < dup.t                                  # the client closed first, then the server
    ack = next(s for s in mine if s.sport == CLIENT_PORT and s.t > dup.t)   # 5.2
    assert ack.flags == "ACK" and ack.seq == (fin_c.seq + 1) % M32 and ack.ack == (fin_s.seq + 1) % M32
    rst_srv = next(s for s in at_server if s.sport == PORT and s.dport == CLIENT_PORT and s.has("RST"))
    assert rst_srv.flags == "RST" and rst_srv.seq == ack.ack          # 5.3: <SEQ=SEG.ACK><CTL=RST>
    rst = next(s for s in mine if s.sport == PORT and s.has("RST"))
    assert rst.t > ack.t and rst.tsval is None
    assert probe.t > rst.t
    answer = next(s for s in mine if s.sport == CLIENT_PORT and s.t > probe.t)
    return {"dup": dup, "ack": ack, "rst": rst, "probe": probe, "answer": answer}


def test_tw_assassination_default(backend, tmp_path):
    report = run_scenario("tw-assassination", backend=backend, artifacts=tmp_path)
    assert report["verdict"] == "pass", failed(report)
    assert report["hosts"]["client"]["sysctls"]["net.ipv4.tcp_rfc1337"] == "0"
    seg = figure_1(tmp_path)
    # sock_diag: the client's TIME-WAIT disappears right after the RST
    gone = [e for e in report["timeline"] if e["host"] == "client" and e["kind"] == "state"
            and e["data"]["socket"]["state"] == "GONE" and e["data"]["socket"]["sport"] == CLIENT_PORT]
    assert gone and 0 <= gone[0]["t"] - seg["rst"].t < 0.1
    assert report["facts"]["tw_after"] is None
    assert report["facts"]["counters"]["client"].get("TcpExtPAWSTimewait", 0) >= 1
    # the wire: no socket answers the probe, so the client's stack resets it (seq = its ack)
    assert seg["answer"].flags == "RST" and seg["answer"].seq == seg["probe"].ack
    assert report["facts"]["probe_counters"]["client"].get("TcpOutRsts") == 1


def test_tw_assassination_rfc1337(backend, tmp_path):
    report = run_scenario("tw-assassination", backend=backend, artifacts=tmp_path,
                          sysctls=[parse_sysctl("client:net.ipv4.tcp_rfc1337=1")])
    assert report["verdict"] == "pass", failed(report)
    assert "time-wait-survives-rst" in {c["name"] for c in report["checks"]}
    seg = figure_1(tmp_path)
    assert report["facts"]["tw_after"]["state"] == "TIME_WAIT"
    # the wire: the surviving TIME-WAIT answers the probe with its ACK of SND.NXT/RCV.NXT, no RST
    assert seg["answer"].flags == "ACK" and (seg["answer"].seq, seg["answer"].ack) == (seg["ack"].seq, seg["ack"].ack)
    assert not report["facts"]["probe_counters"]["client"].get("TcpOutRsts")
    assert report["facts"]["tw_after_probe"]["state"] == "TIME_WAIT"
    assert not [e for e in report["timeline"] if e["host"] == "client" and e["kind"] == "state"
                and e["data"]["socket"]["state"] == "GONE" and e["data"]["socket"]["sport"] == CLIENT_PORT]
