"""lost-ack end to end on both backends: the verdict, and the same story read again straight from
the pcaps (not from the report's checks), so a check that passes for the wrong reason is caught."""

from __future__ import annotations

import json
import platform

import pytest

from lab.core import parse_sysctl
from lab.packets import Segment, read_pcap
from lab.runner import run_scenario
from scenarios import lost_ack
from scenarios.lost_ack import PORT

pytestmark = pytest.mark.integration

TW_ZERO = "client:net.ipv4.tcp_max_tw_buckets=0"


def from_server(segs: list[Segment]) -> list[Segment]:
    return [s for s in segs if s.sport == PORT]


def from_client(segs: list[Segment]) -> list[Segment]:
    return [s for s in segs if s.dport == PORT]


def server_fins(segs: list[Segment]) -> list[Segment]:
    return [s for s in from_server(segs) if s.has("FIN")]


def check_report_fields(report: dict, artifacts, backend: str) -> None:
    on_disk = json.loads((artifacts / "report.json").read_text())
    assert on_disk["verdict"] == report["verdict"] and on_disk["lab_id"] == report["lab_id"]
    assert on_disk["scenario"] == "lost-ack"
    assert on_disk["backend"] == backend
    assert on_disk["kernel"] == platform.release()
    assert set(on_disk["hosts"]) == {"client", "router", "server"}
    for name, host in on_disk["hosts"].items():
        assert host["sysctls"]["net.ipv4.tcp_max_tw_buckets"].lstrip("-").isdigit(), name
        assert host["addresses"], name
    assert on_disk["hosts"]["router"]["sysctls"]["net.ipv4.ip_forward"] == "1"
    for end in ("client", "server"):                  # only the router forwards
        assert on_disk["hosts"][end]["sysctls"]["net.ipv4.ip_forward"] == "0", end
        assert on_disk["hosts"][end]["sysctls"].get("net.ipv6.conf.all.forwarding", "0") == "0", end
    assert on_disk["checks"], "no checks: nothing was judged"
    for check in on_disk["checks"]:
        for field in ("name", "citation", "expected", "observed"):
            assert isinstance(check[field], str) and check[field], (check.get("name"), field)
        assert check["passed"] is True, check
    assert on_disk["timeline"]
    for event in on_disk["timeline"]:
        assert {"t", "t_rel_s", "host", "kind", "text"} <= set(event)
    kinds = {e["kind"] for e in on_disk["timeline"]}
    assert {"peer", "state", "fault"} <= kinds
    assert sorted(on_disk["artifacts"]["pcaps"]) == ["client.pcap", "faults.pcap", "router-client.pcap",
                                                     "router-server.pcap", "server.pcap"]
    assert (artifacts / "report.html").stat().st_size > 0


def test_lost_ack_default(backend, tmp_path):
    report = run_scenario("lost-ack", backend=backend, artifacts=tmp_path)
    assert report["verdict"] == "pass", [c["observed"] for c in report["checks"] if not c["passed"]]
    assert report["error"] is None
    check_report_fields(report, tmp_path, backend)
    assert report["hosts"]["client"]["sysctls"]["net.ipv4.tcp_max_tw_buckets"] != "0"
    assert report["intent"] == lost_ack.INTENT

    at_server, at_client = read_pcap(tmp_path / "server.pcap"), read_pcap(tmp_path / "client.pcap")
    drop = report["faults"]["lost-ack"]
    lifted = drop["removed_at"]
    assert drop["installed_at"] < lifted

    # the server sends its FIN more than once, always with the same sequence number
    fins = server_fins(at_server)
    assert len(fins) >= 2, [s.flags for s in at_server]
    assert len({f.seq for f in fins}) == 1
    assert any(f.t < lifted for f in fins[1:]), "no FIN was retransmitted while the drop was on"

    # every FIN that reaches the client is answered by an ACK of it, before the next FIN comes
    fins_at_client = server_fins(at_client)
    assert len(fins_at_client) == len(fins)
    acks = []
    for i, fin in enumerate(fins_at_client):
        until = fins_at_client[i + 1].t if i + 1 < len(fins_at_client) else float("inf")
        answer = [s for s in from_client(at_client)
                  if s.has("ACK") and not s.has("RST") and not s.has("FIN")
                  and s.ack == (fin.seq + 1) & 0xFFFFFFFF and fin.t <= s.t < until]
        assert answer, f"FIN #{i} (t={fin.t:.6f}) is not answered in client.pcap"
        acks.append(answer[0])

    # those ACKs never reach the server while the drop is in force; the first one after does
    def seen_by_server(ack: Segment) -> bool:
        return any(s.same_wire(ack) for s in at_server)

    under = [a for a in acks if a.t < lifted]
    after = [a for a in acks if a.t >= lifted]
    assert len(under) >= 2
    assert not [a for a in under if seen_by_server(a)], "an ACK crossed the router under the drop"
    assert after and seen_by_server(after[0]), "the ACK after the drop was lifted did not arrive"
    # the router logged (NFLOG) dropping each of them, and dropped nothing but pure ACKs to the server
    dropped = read_pcap(tmp_path / "faults.pcap")
    assert {d.prefix for d in dropped} == {"lost-ack"}
    assert all(d.pure_ack and d.dport == PORT for d in dropped), [d.flags for d in dropped]
    for a in under:
        assert any(d.same_wire(a) for d in dropped), f"ACK at {a.t:.6f} not in faults.pcap"

    # the report's counts agree with what the pcaps show
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["server-retransmits-fin"]["values"]["fin_count"] == len(fins)
    assert checks["final-ack-lost-then-delivered"]["values"]["acks_under_drop"] == len(under)
    # and the client is still in TIME-WAIT when the run ends
    assert [s["state"] for s in report["facts"]["client_sockets_at_end"]] == ["TIME_WAIT"]


def test_lost_ack_without_time_wait_buckets(backend, tmp_path):
    said: list[str] = []
    report = run_scenario("lost-ack", backend=backend, artifacts=tmp_path,
                          sysctls=[parse_sysctl(TW_ZERO)], progress=said.append)
    assert report["verdict"] == "pass", [c["observed"] for c in report["checks"] if not c["passed"]]
    # the intent announced and recorded follows the sysctls in force: the RST lesson
    running = [line for line in said if line.startswith("running lost-ack: ")]
    assert running == [f"running lost-ack: {report['intent']}"], said
    assert "RST" in report["intent"] and "re-ACKs" not in report["intent"]
    check_report_fields(report, tmp_path, backend)
    assert report["hosts"]["client"]["sysctls"]["net.ipv4.tcp_max_tw_buckets"] == "0"
    assert report["hosts"]["server"]["sysctls"]["net.ipv4.tcp_max_tw_buckets"] != "0"
    assert report["sysctls_requested"] == [TW_ZERO]
    assert {c["name"] for c in report["checks"]} == {"no-time-wait-state", "fin-answered-with-rst",
                                                      "rst-aborts-server"}

    at_client, at_server = read_pcap(tmp_path / "client.pcap"), read_pcap(tmp_path / "server.pcap")
    fins = server_fins(at_client)
    assert fins, "the server's FIN never reached the client"
    rsts = [s for s in from_client(at_client) if s.has("RST") and s.t >= fins[0].t]
    assert rsts, "the client did not answer the server's FIN with RST"
    assert rsts[0].seq == fins[0].ack                       # the RST answers that FIN
    assert any(s.same_wire(rsts[0]) for s in at_server), "the RST did not reach the server"
    assert len(server_fins(at_server)) == 1                  # the RST ended it: no retransmission
    assert report["counters"]["client"].get("TcpExtTCPTimeWaitOverflow", 0) >= 1
    assert report["counters"]["client"].get("SockstatTcpTw", 0) <= 0
    assert report["facts"]["client_sockets_at_end"] == []
