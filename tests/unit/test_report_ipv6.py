"""An IPv6 run's report in the terminal: the ladder finds the run's family's addresses, and at
100 columns no address is wrapped or cut (lab.ladder, lab.report)."""

from __future__ import annotations

import io
import re

from rich.console import Console

from lab.ladder import ladder_rows, run_addresses
from lab.report import show

# the longest addresses a lab instance can have: a /48 of four full groups (lab.backends.prefixes)
C6, R6A, R6B, S6 = "fdff:ffff:ffff:1::10", "fdff:ffff:ffff:1::2", "fdff:ffff:ffff:2::2", "fdff:ffff:ffff:2::10"
C4, R4A, R4B, S4 = "10.77.1.10", "10.77.1.2", "10.77.2.2", "10.77.2.10"


def seg(t, src, sport, dst, dport, flags, seq, ack, flow=0x1234):
    return {"t": t, "src": src, "sport": sport, "dst": dst, "dport": dport, "flags": flags, "seq": seq,
            "ack": ack, "length": 0, "tsval": None, "tsecr": None, "flow_label": flow}


def report(family: int) -> dict:
    c, s = (C6, S6) if family == 6 else (C4, S4)
    sent = [seg(1.0, c, 41002, s, 5000, "SYN", 100, 0), seg(1.001, s, 5000, c, 41002, "SYN,ACK", 500, 101),
            seg(1.002, c, 41002, s, 5000, "ACK", 101, 501), seg(1.1, c, 41002, s, 5000, "FIN,ACK", 101, 501),
            seg(1.101, s, 5000, c, 41002, "FIN,ACK", 501, 102), seg(1.102, c, 41002, s, 5000, "ACK", 102, 502)]
    at_server = [x for x in sent if x["flags"] != "ACK" or x["seq"] != 102]     # the last ACK dropped
    sock = {"state": "TIME_WAIT", "src": c, "sport": 41002, "dst": s, "dport": 5000, "timer": "timewait",
            "expires_ms": 59900, "retrans": 0, "inode": 0}
    return {
        "scenario": "lost-ack-ipv6-test", "intent": "the final ACK is lost", "backend": "netns",
        "kernel": "6.8.0-1020-test", "kernel_hz": 1000, "lab_id": "a1b2c3", "family": family,
        "hosts": {"client": {"addresses": {"left": c}, "addresses4": {"left": C4}, "addresses6": {"left": C6}},
                  "router": {"addresses": {"left": R6A if family == 6 else R4A, "right": R6B if family == 6 else R4B},
                             "addresses4": {"left": R4A, "right": R4B}, "addresses6": {"left": R6A, "right": R6B}},
                  "server": {"addresses": {"right": s}, "addresses4": {"right": S4}, "addresses6": {"right": S6}}},
        "netem": {"available": True, "reason": "netem available"},
        "packets": {"client": sent, "server": at_server},
        "timeline": [{"t": 1.103, "host": "client", "kind": "state", "text": "", "data": {"socket": sock}},
                     {"t": 1.05, "host": "router", "kind": "fault", "text": "fault lost-ack on: drop client->server "
                                                                             "tcp flags==ack", "data": {}}],
        "checks": [{"name": "the FIN is retransmitted", "passed": True, "expected": "a second FIN,ACK",
                    "observed": f"FIN,ACK from [{s}]:5000 to [{c}]:41002 again after 0.201 s, and the "
                                f"client's TIME-WAIT socket [{c}]:41002 -> [{s}]:5000 answered it",
                    "citation": "RFC 9293 3.6.1"}],
        "verdict": "pass", "artifacts": {"dir": "/tmp/x", "pcaps": ["client.pcap"]}, "duration_s": 1.5,
    }


def test_the_ladder_follows_the_run_family():
    for family in (4, 6):
        rep = report(family)
        rows = [r for r in ladder_rows(rep) if r.kind == "segment"]
        assert len(rows) == 6
        assert [r.fate for r in rows] == ["arrived"] * 5 + ["lost"]
    assert run_addresses(report(6)) == {"client": C6, "router": R6A, "server": S6}
    assert run_addresses(report(4)) == {"client": C4, "router": R4A, "server": S4}
    # a report from before IPv6: addresses only, no family
    old = report(4)
    old.pop("family")
    for h in old["hosts"].values():
        h.pop("addresses4"), h.pop("addresses6")
    assert run_addresses(old) == {"client": C4, "router": R4A, "server": S4}


def rendered(rep: dict, width: int = 100) -> list[str]:
    out = io.StringIO()
    show(rep, Console(file=out, width=width, force_terminal=False, color_system=None))
    return out.getvalue().splitlines()


def test_no_address_is_wrapped_or_cut_at_100_columns():
    lines = rendered(report(6))
    assert max(len(line) for line in lines) <= 100
    text = "\n".join(lines)
    assert f"client {C6}, router {R6A}, server {S6}" in text
    ipv6ish = re.compile(r"[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,}")
    for line in lines:
        for found in ipv6ish.findall(line):
            assert found in (C6, R6A, R6B, S6) or len(found) < 3, (found, line)
    # a check's words wrap under their own start, not back to column 0
    observed = next(i for i, line in enumerate(lines) if line.lstrip().startswith("observed"))
    assert lines[observed + 1].startswith(" " * 16) and lines[observed + 1].strip()
    assert "IPv6" in lines[1]
    assert any("✕ lost" in line for line in lines)


def test_a_narrower_terminal_gets_one_host_a_line():
    lines = rendered(report(6), width=80)
    assert max(len(line) for line in lines) <= 80
    assert [line for line in lines if line.startswith(("client ", "router ", "server "))] == [
        f"client {C6}", f"router {R6A}", f"server {S6}"]
