"""The ladder diagram's content, drawn by nobody: each segment of a run (from its sender's capture)
with its fate at the receiver, the ends' socket states and the router's faults, in time order.
lab.report draws it in the terminal; an HTML view can draw the same rows.

    rows = ladder_rows(report, port=41002)     # [Row, ...]; t relative to the first segment
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from .packets import Segment, match_arrivals

__all__ = ["Row", "ladder_rows", "label", "run_addresses"]

ARRIVED, LOST, UNKNOWN = "arrived", "lost", "unknown"     # a segment's fate at its receiver
_SEG_FIELDS = ("t", "src", "sport", "dst", "dport", "flags", "seq", "ack", "length", "tsval", "tsecr",
               "flow_label")


@dataclass(frozen=True)
class Row:
    t: float                       # seconds from the first segment drawn
    kind: str                      # "segment", "state" or "fault"
    text: str                      # the segment's label, the state, the fault's words
    host: str = ""                 # the sender (segment) or the host (state); "router" for faults
    rightward: bool = True         # a segment from the left end to the right one
    fate: str = ""                 # a segment's: arrived, lost, unknown (its receiver's capture had ended)
    flags: str = ""
    segment: dict = field(default_factory=dict)   # the segment as report.json holds it


def ladder_rows(report: dict[str, Any], left: str = "client", right: str = "server",
                port: int | None = None) -> list[Row]:
    """Each segment between *left* and *right* (only the connection from *left*'s *port*, when
    given), each state change of their sockets, each fault - in time order."""
    ip = run_addresses(report)
    packets = report.get("packets", {})
    sent = [s for h in (left, right) for s in packets.get(h, []) if s["src"] == ip.get(h)]
    if port is not None:
        sent = [s for s in sent if port in (s["sport"], s["dport"])]
    if not sent:
        return []
    t0 = min(s["t"] for s in sent)
    rows = _segment_rows(report, sent, left, right, ip, t0)
    rows += _state_rows(report, left, right, port, t0)
    rows += [Row(ev["t"] - t0, "fault", ev["text"], "router") for ev in report.get("timeline", [])
             if ev["kind"] == "fault" and ev["t"] >= t0]
    return sorted(rows, key=lambda r: r.t)


def run_addresses(report: dict[str, Any]) -> dict[str, str | None]:
    """Each host's address in the run's family (report.json's ``family``; 4 in reports older than
    IPv6): the first of that version among those its ``hosts`` entry lists (under ``addresses``,
    and any other ``addresses...`` key), as text."""
    family = report.get("family") or 4
    out: dict[str, str | None] = {}
    for host, entry in report.get("hosts", {}).items():
        found = [a for key, table in sorted(entry.items(), key=lambda kv: kv[0] != "addresses")
                 if key.startswith("addresses") and isinstance(table, dict)
                 for a in table.values() if _version(a) == family]
        out[host] = found[0] if found else None
    return out


def _version(addr: str) -> int | None:
    try:
        return ipaddress.ip_address(addr).version
    except ValueError:
        return None


def _segment_rows(report: dict, sent: list[dict], left: str, right: str, ip: dict, t0: float) -> list[Row]:
    isn: dict[tuple, list[tuple[float, int]]] = {}     # per connection: its SYNs (time, seq)
    for s in sorted(sent, key=lambda s: s["t"]):
        if "SYN" in s["flags"]:
            isn.setdefault((s["src"], s["sport"], s["dst"], s["dport"]), []).append((s["t"], s["seq"]))
    packets = report.get("packets", {})
    arrivals = {}
    for me, other in ((left, right), (right, left)):
        mine = [_seg(s) for s in sent if s["src"] == ip.get(me)]
        got = match_arrivals(mine, [_seg(r) for r in packets.get(other, []) if r["src"] == ip.get(me)])
        arrivals.update({_key(s.__dict__): got[id(s)] for s in mine})
    blind = _blind_after(report)
    rows = []
    for s in sent:
        rightward = s["src"] == ip.get(left)
        receiver = right if rightward else left
        arrived = arrivals.get(_key(s))
        fate = ARRIVED if arrived is not None else \
            UNKNOWN if s["t"] > blind.get(receiver, float("inf")) else LOST
        rows.append(Row(s["t"] - t0, "segment", label(s, isn), left if rightward else right, rightward,
                        fate, s["flags"], s))
    return rows


def _state_rows(report: dict, left: str, right: str, port: int | None, t0: float) -> list[Row]:
    rows = []
    for ev in report.get("timeline", []):
        if ev["kind"] != "state" or ev["host"] not in (left, right) or ev["t"] < t0:
            continue
        sock = ev["data"]["socket"]
        if sock["dport"] == 0 or (port is not None and port not in (sock["sport"], sock["dport"])):
            continue                                   # the listener, or another connection
        extra = f" ({sock['expires_ms'] / 1000:.1f} s)" if sock["state"] == "TIME_WAIT" else ""
        rows.append(Row(ev["t"] - t0, "state", f"{sock['state']}{extra}", ev["host"], ev["host"] == left))
    return rows


def _key(s: dict) -> tuple:
    return (s["t"], s["src"], s["sport"], s["flags"], s["seq"], s["ack"], s["tsval"])


def _seg(d: dict) -> Segment:
    return Segment(**{k: d.get(k) for k in _SEG_FIELDS})


def _blind_after(report: dict[str, Any]) -> dict[str, float]:
    """Hosts whose capture ended early, each with the time of the last packet it did capture:
    whether later segments reached them is unknown, so none is called lost."""
    out = {}
    for problem in (report.get("observation") or {}).get("problems", []):
        if problem.get("kind") == "capture":
            seen = [p["t"] for p in report.get("packets", {}).get(problem["host"], [])]
            out[problem["host"]] = max(seen, default=float("-inf"))
    return out


def _rel(seg: dict, isn: dict[tuple, list[tuple[float, int]]], key: str) -> int:
    """*key* ("seq" or "ack") relative to the ISN of the connection it belongs to: the latest SYN
    its sender sent on that 4-tuple by then (a reopened 4-tuple starts again from its new SYN)."""
    tup = (seg["src"], seg["sport"], seg["dst"], seg["dport"]) if key == "seq" else \
        (seg["dst"], seg["dport"], seg["src"], seg["sport"])
    bases = [seq for t, seq in isn.get(tup, []) if t <= seg["t"]]
    return (seg[key] - bases[-1]) & 0xFFFFFFFF if bases else seg[key]


def label(seg: dict, isn: dict[tuple, list[tuple[float, int]]]) -> str:
    """"FIN,ACK seq=6 ack=1": flags, and the numbers relative to the connection's ISNs."""
    parts = [seg["flags"].replace("PSH,", "")]
    if "SYN" in seg["flags"] or "FIN" in seg["flags"] or seg["length"] or "RST" in seg["flags"]:
        parts.append(f"seq={_rel(seg, isn, 'seq')}")
    if "ACK" in seg["flags"]:
        parts.append(f"ack={_rel(seg, isn, 'ack')}")
    if seg["length"]:
        parts.append(f"len={seg['length']}")
    return " ".join(parts)
