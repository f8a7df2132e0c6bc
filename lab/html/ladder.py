"""The ladder as SVG: each segment an arrow from its sender's capture to its receiver's (lab.ladder's
rows, the rows the terminal draws), on lab.html.axis's time axis, each end's socket states as lanes
beside it (lab.html.lanes), the router's faults on the line between.

Every arrow is one <g class="seg ..."> with data-fate (arrived, lost, unknown) and data-marks (the
faults that acted on it), and a <title> holding the segment's fields: the hover text.
"""

from __future__ import annotations

import math

from ..ladder import ARRIVED, LOST, Row
from .axis import TimeAxis
from .lanes import lanes
from .svg import el, esc, num, svg_doc

__all__ = ["ladder_svg", "ladder_axis", "WIDTH"]

WIDTH, TOP = 820.0, 48.0
X_AXIS, X_LEFT, X_MID, X_RIGHT = 66.0, 214.0, 440.0, 666.0
LANE_W, LANE_GAP, LABEL_PX = 9.0, 8.0, 11.0
_FIELDS = ("src", "sport", "dst", "dport", "flags", "seq", "ack", "length", "tsval", "tsecr")


def ladder_axis(rows: list[Row]) -> TimeAxis:
    """The axis for these rows: every moment drawn (sends, arrivals, state samples, faults), the
    fine scale fitted to the rows that carry a label on the arrows' side."""
    moments = [r.t for r in rows] + [r.arrival for r in rows if r.arrival is not None] \
        + [r.since for r in rows if r.since is not None]
    return TimeAxis.fit(moments, [r.t for r in rows if r.kind != "state"] or [r.t for r in rows])


def ladder_svg(rows: list[Row], left: str, right: str, pcaps: dict[str, str], ident: str = "ladder") -> str:
    """The figure; *pcaps* names the capture each host's segments come from ("client.pcap")."""
    axis = ladder_axis(rows)
    xs = {left: X_LEFT, right: X_RIGHT, "router": X_MID}
    body = [_defs(), _columns(axis, left, right), _gutter(axis, rows)]
    body += [_lanes(axis, rows, left, -1), _lanes(axis, rows, right, +1)]
    body += [_fault(axis, r) for r in rows if r.kind == "fault"]
    placed: list[float] = []
    body += [_arrow(axis, r, xs, left, right, pcaps, placed) for r in rows if r.kind == "segment"]
    segs = [r for r in rows if r.kind == "segment"]
    count = {f: sum(r.fate == f for r in segs) for f in (ARRIVED, LOST)}
    marked = {m: sum(any(x.startswith(m) for x in r.marks) for r in segs)
              for m in ("held", "copied", "replayed", "dropped")}
    desc = (f"{len(segs)} segments between {left} (left) and {right} (right), from their captures, time running "
            f"down: {count[ARRIVED]} arrived, {count[LOST]} lost, {marked['dropped']} dropped by a fault, "
            f"{marked['held']} held, {marked['copied']} copied and {marked['replayed']} replayed by the router; "
            f"beside each end its socket states as sock_diag sampled them, each change drawn over the interval "
            f"between the samples that bound it.")
    inner = el("g", "".join(body), transform=f"translate(0 {num(TOP)})")
    return svg_doc(WIDTH, TOP + axis.height, f"Ladder: {left} and {right}", desc, inner, id=ident,
                   class_="ladder")


def _defs() -> str:
    heads = "".join(el("marker", el("path", d="M0,0 L10,5 L0,10 z", class_=f"head {k}"), id=f"ah-{k}",
                       viewBox="0 0 10 10", refX="10", refY="5", markerWidth="7", markerHeight="7",
                       orient="auto-start-reverse") for k in ("ack", "syn", "fin", "rst", "data", "replay"))
    hatch = el("pattern", el("path", d="M0,6 L6,0", class_="hatch"), id="hatch", width="6", height="6",
               patternUnits="userSpaceOnUse")
    return el("defs", heads + hatch)


def _columns(axis: TimeAxis, left: str, right: str) -> str:
    h = axis.height
    out = [el("line", x1=x, y1=0.0, x2=x, y2=h, class_=c) for x, c in
           ((X_LEFT, "end"), (X_RIGHT, "end"), (X_MID, "router"))]
    out += [el("text", esc(name), x=x, y=-30.0, class_="host", text_anchor="middle") for x, name in
            ((X_LEFT, left), (X_RIGHT, right), (X_MID, "router"))]
    out.append(el("text", "time (s)", x=X_AXIS - 4, y=-30.0, class_="host", text_anchor="end"))
    return "".join(out)


def _gutter(axis: TimeAxis, rows: list[Row]) -> str:
    """The axis: solid through bursts, dotted through quiet stretches (their length beside), a
    zigzag where an idle stretch is cut; each labelled row's time, where there is room."""
    out = []
    for p in axis.pieces:
        if p.kind == "burst":
            out.append(el("line", x1=X_AXIS, y1=p.y0, x2=X_AXIS, y2=max(p.y1, p.y0 + 1), class_="axis burst"))
            continue
        mid, length = (p.y0 + p.y1) / 2, _duration(p.t1 - p.t0)
        if p.kind == "idle":
            zig = " ".join(f"{num(X_AXIS + (4 if i % 2 else -4))},{num(p.y0 + 6 + i * 4)}" for i in range(9))
            out.append(el("polyline", points=zig, class_="axis idle"))
            out.append(el("text", esc(f"{length} idle, cut"), x=X_AXIS + 10, y=mid + 4, class_="gap"))
        else:
            out.append(el("line", x1=X_AXIS, y1=p.y0, x2=X_AXIS, y2=p.y1, class_="axis quiet"))
            out.append(el("text", esc(f"{length}"), x=X_AXIS + 6, y=mid + 4, class_="gap"))
    last = -1e9
    for r in sorted((r for r in rows if r.kind != "state"), key=lambda r: r.t):
        y = axis.y(r.t)
        if y - last >= LABEL_PX:
            out.append(el("text", f"{r.t:.4f}", x=X_AXIS - 4, y=y + 4, class_="tick", text_anchor="end"))
            last = y
    return el("g", "".join(out), class_="gutter")


def _duration(s: float) -> str:
    return f"{s:.1f} s" if s >= 1 else f"{s * 1000:.0f} ms" if s >= 0.01 else f"{s * 1000:.1f} ms"


def _lanes(axis: TimeAxis, rows: list[Row], host: str, side: int) -> str:
    """*host*'s lanes: side -1 left of the left end's line, +1 right of the right end's; the
    states' names beyond the outermost lane (with the socket's port when there are several)."""
    out, end = [], axis.pieces[-1].t1 if axis.pieces else 0.0
    base, found = (X_LEFT if side < 0 else X_RIGHT), lanes(rows, host)
    labels = []
    for i, lane in enumerate(found):
        x = base + side * (LANE_GAP + i * (LANE_W + 2)) - (LANE_W if side < 0 else 0)
        for sp in lane.spans:
            y0, y1 = axis.y(sp.t0), axis.y(sp.t1 if sp.t1 is not None else end)
            tip = f"{host} {lane.socket}: {sp.text} from {sp.t0:.4f} s" + \
                (f" until at least {sp.t1:.4f} s" if sp.t1 is not None else ", still so when the run ended")
            out.append(el("rect", el("title", esc(tip)), x=x, y=y0, width=LANE_W, height=max(y1 - y0, 1.0),
                          class_=f"span st-{sp.state}", data_state=sp.state))
            port = f":{lane.socket.split('-')[0].rsplit(':', 1)[-1]} " if len(found) > 1 else ""
            labels.append((y0, port + sp.text))
        out += [_change(axis, ch, x, host, lane.socket) for ch in lane.changes]
    outer = base + side * (LANE_GAP + len(found) * (LANE_W + 2)) + (4 if side > 0 else -4)
    out.append(_lane_labels(sorted(labels), outer, "end" if side < 0 else "start"))
    return el("g", "".join(out), class_=f"lanes {host}")


def _change(axis: TimeAxis, ch, x: float, host: str, socket: str) -> str:
    """One change: the interval it is known to lie in, hatched; a tick where the new state was seen."""
    y1 = axis.y(ch.t1)
    y0 = axis.y(ch.t0) if ch.t0 is not None else max(0.0, y1 - 24)
    what = f"first seen {ch.after}" if ch.before is None else f"{ch.before} -> {ch.after}"
    when = (f"after {ch.t0:.4f} s (the sample before)" if ch.t0 is not None else "at an unknown time before")
    tip = f"{host} {socket}: {what}, {when} and by {ch.t1:.4f} s (the sample that saw it)"
    if ch.before is None:
        tip += "; no earlier sample saw this socket: its states before are not known"
    return el("g", el("title", esc(tip)) + el("rect", x=x - 1, y=y0, width=LANE_W + 2, height=max(y1 - y0, 1.5),
                                               class_="change") + el("line", x1=x - 2, y1=y1, x2=x + LANE_W + 2, y2=y1,
                                                                     class_="seen"),
              class_="change-group", data_before=ch.before or "", data_after=ch.after)


def _lane_labels(labels: list[tuple[float, str]], x: float, anchor: str) -> str:
    """The states' names at the height their spans start, nudged down (at most three rows) to
    clear the one above; a name that would move further is left to the lane's hover text."""
    out, last = [], -1e9
    for y, text in labels:
        at = max(y, last + LABEL_PX)
        if at - y > 3 * LABEL_PX:
            continue
        out.append(el("text", esc(text), x=x, y=at + 9, class_="state", text_anchor=anchor))
        last = at
    return "".join(out)


def _fault(axis: TimeAxis, r: Row) -> str:
    y = axis.y(r.t)
    return el("g", el("title", esc(f"router, {r.t:.4f} s: {r.text}")) +
              el("path", d=f"M{num(X_MID)},{num(y - 5)} l5,5 l-5,5 l-5,-5 z", class_="fault") +
              el("text", esc(r.text), x=X_MID + 8, y=y + 4, class_="fault"), class_="fault-mark")


def _kind(r: Row) -> str:
    flags = r.flags.split(",")
    return "rst" if "RST" in flags else "syn" if "SYN" in flags else "fin" if "FIN" in flags else \
        "data" if r.segment.get("length") else "ack"


def _arrow(axis: TimeAxis, r: Row, xs: dict, left: str, right: str, pcaps: dict, placed: list[float]) -> str:
    receiver = right if r.rightward else left
    x0, x1, y0 = xs.get(r.host, X_MID), xs[receiver], axis.y(r.t)
    kind = "replay" if r.host == "router" else _kind(r)
    held = any(m.startswith("held") for m in r.marks)
    if r.fate == ARRIVED:
        y1 = axis.y(r.arrival if r.arrival is not None else r.t)
        pts = [(x0, y0), (X_MID, y0), (X_MID, y1), (x1, y1)] if held else [(x0, y0), (x1, y1)]
    elif r.fate == LOST:
        pts, y1 = [(x0, y0), (X_MID - 8 * (1 if r.rightward else -1), y0)], y0
    else:
        pts, y1 = [(x0, y0), (x1, y0)], y0
    d = "M" + " L".join(f"{num(x)},{num(y)}" for x, y in pts)
    line = el("path", d=d, class_=f"arrow {kind}", marker_end=f"url(#ah-{kind})" if r.fate == ARRIVED else None)
    extra = _fate_mark(r, pts[0], pts[-1])
    label = _label(r, pts, placed)
    marks = " ".join(m.split(" ")[0] for m in r.marks)
    return el("g", el("title", esc(_tip(r, receiver, pcaps))) + line + extra + label,
              class_=f"seg {r.fate} {kind} {marks}".strip(), data_fate=r.fate, data_sender=r.host,
              data_marks="; ".join(r.marks) or None, data_t=f"{r.t:.6f}")


def _fate_mark(r: Row, start: tuple[float, float], end: tuple[float, float]) -> str:
    x, y = end
    if r.fate == LOST:
        return el("text", "✕", x=x + (4 if r.rightward else -4), y=y + 5, class_="lost-mark", text_anchor="middle")
    if r.fate != ARRIVED:
        return el("text", "?", x=x + (-6 if r.rightward else 6), y=y + 4, class_="unknown-mark", text_anchor="middle")
    if any(m.startswith("copied") for m in r.marks):          # where the arrow crosses the router
        return el("circle", cx=X_MID, cy=(start[1] + y) / 2, r=3.5, class_="copy-mark")
    return ""


def _label(r: Row, pts: list[tuple[float, float]], placed: list[float]) -> str:
    """The arrow's label along its first stretch, where no other label sits within LABEL_PX."""
    (xa, ya), (xb, yb) = pts[0], pts[1]
    mx, my = (xa + xb) / 2, (ya + yb) / 2
    if any(abs(my - p) < LABEL_PX for p in placed[-40:]):
        return ""
    placed.append(my)
    angle = math.degrees(math.atan2(yb - ya, xb - xa))
    if abs(angle) > 90:
        angle -= 180 * (1 if angle > 0 else -1)
    return el("text", esc(r.text), x=mx, y=my - 4, class_="label", text_anchor="middle",
              transform=f"rotate({num(angle)} {num(mx)} {num(my)})" if abs(angle) > 0.5 else None)


def _tip(r: Row, receiver: str, pcaps: dict) -> str:
    s = r.segment
    sender = "the router (a replay)" if r.host == "router" else r.host
    fields = ", ".join(f"{k}={s.get(k)}" for k in _FIELDS if s.get(k) is not None)
    where = pcaps.get(receiver, f"{receiver}'s capture")
    fate = (f"arrived at {r.arrival:.6f} s ({where})" if r.fate == ARRIVED and r.arrival is not None else
            f"lost: not in {where}" if r.fate == LOST else f"unknown: {where} had ended")
    src = pcaps.get(r.host, "") if r.host != "router" else pcaps.get(receiver, "")
    return (f"{r.text}\n{sender} -> {receiver}, sent {r.t:.6f} s ({src}); {fate}\n{fields}"
            + (f"\n{'; '.join(r.marks)}" if r.marks else ""))
