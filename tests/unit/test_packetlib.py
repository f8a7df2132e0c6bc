"""lab/packetlib.py: the lab's dpkt without the package's __init__ reads what the whole package
reads (the recorded run's four pcaps, Ethernet frames of both families as the prober sees them),
and loads none of the protocols the lab does not read. Each check in a fresh interpreter, where
the lab's own import is the first."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dpkt

from lab.packets import read_pcap

REPO = Path(__file__).resolve().parents[2]
PCAPS = sorted((REPO / "tests" / "data" / "runs" / "lost-ack").glob("*.pcap"))

FRESH = r"""
import json, sys
from lab.packets import read_pcap
from lab.packetlib import dpkt
out = {"pcaps": {p: [s.to_json() for s in read_pcap(p)] for p in sys.argv[2:]},
       "loaded": sorted(m for m in sys.modules if m.startswith("dpkt.")), "frames": []}
for frame in json.loads(sys.argv[1]):
    eth = dpkt.ethernet.Ethernet(bytes.fromhex(frame))
    ip = eth.data
    tcp = ip.data
    out["frames"].append([type(ip).__name__, type(tcp).__name__, tcp.sport, tcp.dport, tcp.seq, tcp.flags])
print(json.dumps(out))
"""


def _frames() -> list[bytes]:
    tcp = dpkt.tcp.TCP(sport=40000, dport=8080, seq=7, flags=dpkt.tcp.TH_SYN)
    v4 = dpkt.ip.IP(src=bytes(4), dst=bytes(4), p=dpkt.ip.IP_PROTO_TCP, data=tcp)
    v4.len = len(v4)
    v6 = dpkt.ip6.IP6(src=bytes(16), dst=bytes(16), nxt=dpkt.ip.IP_PROTO_TCP, hlim=64, data=tcp, plen=len(tcp))
    return [bytes(dpkt.ethernet.Ethernet(type=t, data=p)) for t, p in
            ((dpkt.ethernet.ETH_TYPE_IP, v4), (dpkt.ethernet.ETH_TYPE_IP6, v6))]


def _fresh() -> dict:
    frames = json.dumps([f.hex() for f in _frames()])
    done = subprocess.run([sys.executable, "-c", FRESH, frames, *map(str, PCAPS)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_bare_package_reads_every_recorded_segment_as_the_whole_one_does():
    assert len(PCAPS) == 4
    fresh = _fresh()
    for p in PCAPS:
        whole = [json.loads(json.dumps(s.to_json())) for s in read_pcap(p)]
        assert whole and fresh["pcaps"][str(p)] == whole, p.name


def test_the_prober_reads_ethernet_frames_of_both_families():
    assert _fresh()["frames"] == [["IP", "TCP", 40000, 8080, 7, dpkt.tcp.TH_SYN],
                                  ["IP6", "TCP", 40000, 8080, 7, dpkt.tcp.TH_SYN]]


def test_no_protocol_the_lab_does_not_read_is_loaded():
    loaded = set(_fresh()["loaded"])
    assert {"dpkt.dpkt", "dpkt.pcap", "dpkt.ip", "dpkt.ip6", "dpkt.tcp", "dpkt.ethernet"} <= loaded
    assert not loaded & {"dpkt.bgp", "dpkt.http2", "dpkt.ieee80211", "dpkt.radius", "dpkt.udp", "dpkt.icmp"}
