"""The router's captures, one per interface and named by side: in a lost-ack run, tshark (as
Wireshark would) flags no retransmission or duplicate ACK in router-client.pcap or
router-server.pcap that the ends' captures do not show too. One router.pcap of both interfaces
(every forwarded segment twice) had 13 of 30 frames flagged as retransmissions and 8 as duplicate
ACKs, none of them real. report.json maps each capture to its interface."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from lab.packets import read_pcap
from lab.runner import run_scenario

pytestmark = pytest.mark.integration

FLAGS = ("tcp.analysis.retransmission", "tcp.analysis.fast_retransmission",
         "tcp.analysis.spurious_retransmission", "tcp.analysis.duplicate_ack")


def flagged(pcap) -> list[tuple]:
    """What tshark flags: (what, src, sport, dst, dport, flags, seq, ack, tsval) per flagged frame."""
    fields = ["ip.src", "tcp.srcport", "ip.dst", "tcp.dstport", "tcp.flags", "tcp.seq_raw", "tcp.ack_raw",
              "tcp.options.timestamp.tsval", *FLAGS]
    out = subprocess.run(["tshark", "-r", str(pcap), "-Y", " || ".join(FLAGS), "-T", "fields",
                          *[a for f in fields for a in ("-e", f)]], capture_output=True, text=True, check=True)
    rows = []
    for line in out.stdout.splitlines():
        cols = line.split("\t")
        what = ",".join(f.rsplit(".", 1)[-1] for f, v in zip(FLAGS, cols[8:]) if v)
        rows.append((what, *cols[:8]))
    return rows


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed: run scripts/setup")
def test_router_captures_flag_nothing_the_ends_do_not(backend, tmp_path):
    report = run_scenario("lost-ack", backend=backend, artifacts=tmp_path)
    assert report["verdict"] == "pass", report.get("error")
    points = report["capture_points"]
    assert {n: (p["host"], p["faces"]) for n, p in points.items() if p["host"] == "router"} == \
        {"router-client": ("router", ["client"]), "router-server": ("router", ["server"])}
    assert points["router-client"]["network"] == points["client"]["network"]
    assert points["router-server"]["network"] == points["server"]["network"]
    assert not (tmp_path / "router.pcap").exists()
    ends = set(flagged(tmp_path / "client.pcap")) | set(flagged(tmp_path / "server.pcap"))
    assert any(w.startswith("retransmission") for w, *_ in ends), "the ends show the FIN's retransmissions"
    for name in ("router-client", "router-server"):
        pcap = tmp_path / f"{name}.pcap"
        segs = read_pcap(pcap)
        assert segs, f"{name}.pcap is empty"
        assert len({(s.t, s.seq, s.ack, s.flags, s.tsval) for s in segs}) == len(segs)
        extra = [f for f in flagged(pcap) if f not in ends]
        assert extra == [], f"tshark flags in {name}.pcap what no end's capture shows: {extra}"
    # each interface sees what its side sent and received: the client's ACKs reach router-client
    # (the router drops them afterwards, in its forward path), never router-server
    at_rc, at_rs = read_pcap(tmp_path / "router-client.pcap"), read_pcap(tmp_path / "router-server.pcap")
    client_acks = [s for s in read_pcap(tmp_path / "client.pcap") if s.dport == 5000 and s.pure_ack]
    dropped = [s for s in read_pcap(tmp_path / "faults.pcap")]
    assert dropped and all(any(d.same_wire(s) for s in at_rc) for d in dropped)
    assert not any(d.same_wire(s) for d in dropped for s in at_rs)
    assert len(client_acks) >= len(dropped)
