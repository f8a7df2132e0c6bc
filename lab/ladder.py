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
    segment: dict = field(default_factory=dict)   # the segment as report.json holds it (a state's: its
                                                  # socket, as sock_diag reported it)
    arrival: float | None = None   # a segment's: when its receiver captured it (same clock as t)
    marks: tuple[str, ...] = ()    # a segment's faults: "dropped by F", "held by F", "copied by F",
                                   # "replayed" (sent by the router: no end's capture has it leaving)
    since: float | None = None     # a state's: the sample before, which had not seen it yet (the
                                   # change lies in (since, t]); None when no earlier sample is known
    previous: str | None = None    # a state's: the state sampled before (None: first seen in this one)


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
    rows += replayed_rows(report, sent, left, right, ip, t0)
    rows += _state_rows(report, left, right, port, t0)
    rows += [Row(ev["t"] - t0, "fault", ev["text"], "router") for ev in report.get("timeline", [])
             if ev["kind"] == "fault" and ev["t"] >= t0]
    return sorted(_probes_folded(report, rows, t0), key=lambda r: r.t)


def _probes_folded(report: dict[str, Any], rows: list[Row], t0: float) -> list[Row]:
    """The router prober's segments and their answers (lab.twprobe: hundreds of them) folded into
    one line from the moment probing began."""
    from .twprobe import probe_summary, probing_started

    cut = probing_started(report.get("facts") or {})
    if cut is None:
        return rows
    resumed = (report.get("facts") or {}).get("probing_ended") or float("inf")
    kept = [r for r in rows if r.kind != "segment" or not cut <= r.t + t0 < resumed]
    return kept + [Row(cut - t0, "fault", line, "router") for line in probe_summary(report.get("facts") or {})]


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
    isn = _isns(sent)
    packets = report.get("packets", {})
    arrivals = {}
    for me, other in ((left, right), (right, left)):
        mine = [_seg(s) for s in sent if s["src"] == ip.get(me)]
        got = match_arrivals(mine, [_seg(r) for r in packets.get(other, []) if r["src"] == ip.get(me)])
        arrivals.update({_key(s.__dict__): got[id(s)] for s in mine})
    blind = _blind_after(report)
    logged = fault_log(report)
    rows = []
    for s in sent:
        rightward = s["src"] == ip.get(left)
        receiver = right if rightward else left
        arrived = arrivals.get(_key(s))
        fate = ARRIVED if arrived is not None else \
            UNKNOWN if s["t"] > blind.get(receiver, float("inf")) else LOST
        rows.append(Row(s["t"] - t0, "segment", label(s, isn), left if rightward else right, rightward,
                        fate, s["flags"], s, None if arrived is None else arrived - t0,
                        _marks(s, arrived, logged)))
    return rows


def fault_log(report: dict[str, Any]) -> dict[tuple, list[tuple[float, str, str]]]:
    """What the router's faults did, by segment (its wire identity): [(time, "dropped" | "copied" |
    "injected", fault name), ...] from the timeline (faults.pcap's records and the injections)."""
    out: dict[tuple, list[tuple[float, str, str]]] = {}
    for ev in report.get("timeline", []):
        data = ev.get("data") or {}
        if ev["kind"] in ("drop", "copy") and "segment" in data:
            name = data["segment"].get("prefix") or ""
            out.setdefault(_wire(data["segment"]), []).append((ev["t"], ev["text"].split(" ")[0], name))
        for seg in data.get("segments", []) if ev["kind"] == "fault" else []:
            out.setdefault(_wire(seg), []).append((ev["t"], "injected", ""))
    return out


def _marks(s: dict, arrived: float | None, logged: dict) -> tuple[str, ...]:
    """The faults that acted on sent segment *s*: the router's records of the same wire identity
    between its sending and its arrival (or the next record of a later copy)."""
    until = arrived if arrived is not None else float("inf")
    acts = [(t, what, name) for t, what, name in logged.get(_wire(s), []) if s["t"] - 0.001 <= t <= until]
    held = any(what == "injected" for _, what, _ in acts)
    out = []
    for _, what, name in acts:
        if what == "dropped":
            out.append(f"{'held' if held and arrived is not None else 'dropped'} by {name}")
        elif what == "copied":
            out.append(f"copied by {name}")
    return tuple(dict.fromkeys(out))


def replayed_rows(report: dict, sent: list[dict], left: str, right: str, ip: dict, t0: float) -> list[Row]:
    """Segments an end received that its peer's capture never saw leave (more copies arrived than
    were sent): the router's replays, or copies made on the way. Each is drawn from the router."""
    packets, logged = report.get("packets", {}), fault_log(report)
    isn = _isns(sent)
    tuples = {(s["src"], s["sport"], s["dst"], s["dport"]) for s in sent}
    rows = []
    for me, other in ((left, right), (right, left)):
        mine = [_seg(s) for s in sent if s["src"] == ip.get(other)]
        got = [r for r in packets.get(me, []) if r["src"] == ip.get(other)
               and (r["src"], r["sport"], r["dst"], r["dport"]) in tuples]
        used = {t for t in match_arrivals(mine, [_seg(r) for r in got]).values() if t is not None}
        for r in got:
            if r["t"] in used or r["t"] < t0:
                continue
            injected = [t for t, what, _ in logged.get(_wire(r), []) if what == "injected" and t <= r["t"] + 0.001]
            start = injected[-1] if injected else r["t"]
            rows.append(Row(start - t0, "segment", label(r, isn) + " (replayed)", "router", me == right,
                            ARRIVED, r["flags"], r, r["t"] - t0,
                            ("replayed" if injected else "copy from the path",)))
    return rows


def _state_rows(report: dict, left: str, right: str, port: int | None, t0: float) -> list[Row]:
    rows, asked_before = [], {}
    for ev in report.get("timeline", []):
        if ev["kind"] != "state" or ev["host"] not in (left, right):
            continue
        sock = ev["data"]["socket"]
        key = (ev["host"], sock["src"], sock["sport"], sock["dst"], sock["dport"])
        before, asked_before[key] = asked_before.get(key), ev["data"].get("asked", ev["t"])
        if ev["t"] < t0 or sock["dport"] == 0 or (port is not None and port not in (sock["sport"], sock["dport"])):
            continue                                   # the listener, or another connection
        left_ms = sock.get("expires_ms")               # older recordings keep the state alone
        extra = f" ({left_ms / 1000:.1f} s)" if sock["state"] == "TIME_WAIT" and left_ms is not None else ""
        since = _since(ev, before, report)
        rows.append(Row(ev["t"] - t0, "state", f"{sock['state']}{extra}", ev["host"], ev["host"] == left,
                        segment=sock, since=None if since is None else since - t0, previous=ev["data"].get("previous")))
    return rows


def _since(ev: dict, before: float | None, report: dict) -> float | None:
    """The sample before this state event, which still saw the old state (the sampler records it
    as "since"); in older recordings the latest observation of the old state the record holds -
    the previous state event, or a timer sample of the socket in that state. None for a socket
    first found here when the record does not say when the dump before was."""
    data = ev.get("data") or {}
    if "since" in data or data.get("previous") is None:
        return data.get("since")
    sock, asked = data["socket"], data.get("asked", ev["t"])
    key = f"{sock['src']}:{sock['sport']}-{sock['dst']}:{sock['dport']}"
    old = [x[0] for x in (report.get("timer_samples") or {}).get(ev["host"], [])
           if x[1] == key and x[2] == data["previous"] and x[0] < asked]
    return max(old + ([before] if before is not None else []), default=None)


def _isns(sent: list[dict]) -> dict[tuple, list[tuple[float, int]]]:
    """Per connection (4-tuple, as its sender sees it): its SYNs, (time, seq), in time order."""
    isn: dict[tuple, list[tuple[float, int]]] = {}
    for s in sorted(sent, key=lambda s: s["t"]):
        if "SYN" in s["flags"]:
            isn.setdefault((s["src"], s["sport"], s["dst"], s["dport"]), []).append((s["t"], s["seq"]))
    return isn


def _key(s: dict) -> tuple:
    return (s["t"], s["src"], s["sport"], s["flags"], s["seq"], s["ack"], s["tsval"])


def _wire(s: dict) -> tuple:
    """A segment's identity on the wire (lab.packets.Segment.same_wire): every copy has it."""
    return (s["src"], s["sport"], s["dst"], s["dport"], s["flags"], s["seq"], s["ack"], s["length"], s["tsval"])


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
