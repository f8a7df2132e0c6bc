"""Showing a run: the ladder diagram drawn from the captures, the checks, where the pcaps are."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text

from .packets import Segment, match_arrivals
from .verdict import FAIL, INCONCLUSIVE, NOT_APPLICABLE, PASS, outcome_of

__all__ = ["ladder", "show"]

_WIDTH = 44   # the arrow between the two end columns


def _rel(seg: dict, isn: dict[tuple, list[tuple[float, int]]], key: str) -> int:
    """*key* ("seq" or "ack") relative to the ISN of the connection it belongs to: the latest SYN
    its sender sent on that 4-tuple by then (a reopened 4-tuple starts again from its new SYN)."""
    tup = (seg["src"], seg["sport"], seg["dst"], seg["dport"]) if key == "seq" else \
        (seg["dst"], seg["dport"], seg["src"], seg["sport"])
    bases = [seq for t, seq in isn.get(tup, []) if t <= seg["t"]]
    return (seg[key] - bases[-1]) & 0xFFFFFFFF if bases else seg[key]


def _label(seg: dict, isn: dict[tuple, list[tuple[float, int]]]) -> str:
    parts = [seg["flags"].replace("PSH,", "")]
    if "SYN" in seg["flags"] or "FIN" in seg["flags"] or seg["length"] or "RST" in seg["flags"]:
        parts.append(f"seq={_rel(seg, isn, 'seq')}")
    if "ACK" in seg["flags"]:
        parts.append(f"ack={_rel(seg, isn, 'ack')}")
    if seg["length"]:
        parts.append(f"len={seg['length']}")
    return " ".join(parts)


def _seg(d: dict) -> Segment:
    return Segment(**{k: d.get(k) for k in _SEG_FIELDS})


_SEG_FIELDS = ("t", "src", "sport", "dst", "dport", "flags", "seq", "ack", "length", "tsval", "tsecr")


def ladder(report: dict[str, Any], left: str = "client", right: str = "server",
           port: int | None = None) -> list[Text]:
    """Rows of the classic client/server diagram, each segment drawn from its sender's capture
    and marked lost when the receiver's capture lacks it; socket states beside each end. With
    *port*, only the connection from that port of *left*."""
    packets = report.get("packets", {})
    addr = {h: v["addresses"] for h, v in report.get("hosts", {}).items()}
    a_ip = next(iter(addr.get(left, {}).values()), None)
    b_ip = next(iter(addr.get(right, {}).values()), None)
    sent = [s for s in packets.get(left, []) if s["src"] == a_ip] + \
           [s for s in packets.get(right, []) if s["src"] == b_ip]
    if port is not None:
        sent = [s for s in sent if port in ((s["sport"], s["dport"]))]
    if not sent:
        return [Text("(no packets captured)")]
    isn: dict[tuple, list[tuple[float, int]]] = {}     # per connection: its SYNs (time, seq)
    for s in sorted(sent, key=lambda s: s["t"]):
        if "SYN" in s["flags"]:
            isn.setdefault((s["src"], s["sport"], s["dst"], s["dport"]), []).append((s["t"], s["seq"]))
    t0 = min(s["t"] for s in sent)
    rows: list[tuple[float, Text]] = []
    arrivals = {}
    for me, other, ip in ((left, right, a_ip), (right, left, b_ip)):
        mine = [_seg(s) for s in sent if s["src"] == ip]
        got = match_arrivals(mine, [_seg(r) for r in packets.get(other, []) if r["src"] == ip])
        arrivals.update({(s.t, s.src, s.sport, s.flags, s.seq, s.ack, s.tsval): got[id(s)] for s in mine})
    blind = _blind_after(report)
    for s in sent:
        arrived = arrivals.get((s["t"], s["src"], s["sport"], s["flags"], s["seq"], s["ack"], s["tsval"]))
        label = _label(s, isn)
        rightward = s["src"] == a_ip
        receiver = right if rightward else left
        if arrived is None and s["t"] > blind.get(receiver, float("inf")):
            body = f" {label} ? not captured "       # the receiver's capture had ended: unknown
            arrow = (("─" * 2 + body).ljust(_WIDTH - 1) + "?") if rightward else \
                ("?" + (body + "─" * 2).rjust(_WIDTH - 1))
            style = "yellow"
        elif arrived is not None:
            body = f" {label} ".center(_WIDTH - 2, "─")
            arrow = ("─" + body + "▶") if rightward else ("◀" + body + "─")
            style = "red" if "RST" in s["flags"] else "cyan" if "FIN" in s["flags"] else ""
        else:
            body = f" {label} ✕ lost "
            pad = (_WIDTH - len(body) - 1) // 2
            arrow = ("─" * pad + body + "✕").ljust(_WIDTH) if rightward else \
                ("✕" + body + "─" * pad).rjust(_WIDTH)
            style = "bold red"
        line = Text(f"{s['t'] - t0:8.3f}  ")
        line.append("│", "dim")
        line.append(arrow, style)
        line.append("│", "dim")
        rows.append((s["t"], line))
    for ev in report.get("timeline", []):
        if ev["kind"] != "state" or ev["host"] not in (left, right):
            continue
        sock = ev["data"]["socket"]
        if sock["dport"] == 0:     # the listener
            continue
        if port is not None and port not in (sock["sport"], sock["dport"]):
            continue
        state = sock["state"]
        extra = f" ({sock['expires_ms'] / 1000:.1f} s)" if state == "TIME_WAIT" else ""
        t = ev["t"]
        if t < t0:
            continue
        text = Text(f"{t - t0:8.3f}  ", "dim")
        if ev["host"] == left:
            text.append(f"{left}: {state}{extra}", "yellow")
        else:
            text.append(" " * (_WIDTH + 2 - len(f"{right}: {state}{extra}")))
            text.append(f"{right}: {state}{extra}", "yellow")
        rows.append((t, text))
    for ev in report.get("timeline", []):
        if ev["kind"] == "fault" and ev["t"] >= t0:
            rows.append((ev["t"], Text(f"{ev['t'] - t0:8.3f}  · router: {ev['text']}", "magenta")))
    head = Text(f"{'time (s)':>8}  {left:<{_WIDTH // 2}}{right:>{_WIDTH // 2 + 2}}", "bold")
    return [head] + [r for _, r in sorted(rows, key=lambda r: r[0])]


def _blind_after(report: dict[str, Any]) -> dict[str, float]:
    """Hosts whose capture ended early, each with the time of the last packet it did capture:
    whether later segments reached them is unknown, so none is called lost."""
    out = {}
    for problem in (report.get("observation") or {}).get("problems", []):
        if problem.get("kind") == "capture":
            seen = [p["t"] for p in report.get("packets", {}).get(problem["host"], [])]
            out[problem["host"]] = max(seen, default=float("-inf"))
    return out


def show(report: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    verdict = report.get("verdict")
    console.rule(f"[bold]{report['scenario']}[/]: {report.get('intent', '')}")
    hosts = report.get("hosts", {})
    console.print(f"backend [bold]{report.get('backend')}[/], kernel {report.get('kernel')} "
                  f"(HZ={report.get('kernel_hz')}), lab {report.get('lab_id')}, "
                  + ", ".join(f"{h} {next(iter(v['addresses'].values()))}" for h, v in hosts.items()))
    if report.get("sysctls_requested"):
        console.print("sysctls set: " + ", ".join(report["sysctls_requested"]))
    netem = report.get("netem", {})
    if not netem.get("available"):
        console.print(f"[dim]{netem.get('reason')}; this scenario does not need it[/]")
    for host, stats in (report.get("captures") or {}).items():
        if stats.get("dropped"):
            console.print(f"[bold yellow]warning:[/] tcpdump in {host} dropped {stats['dropped']} packets: "
                          "its pcap is incomplete, and a segment missing from it may not have been lost")
    for problem in (report.get("observation") or {}).get("problems", []):
        console.print(f"[bold yellow]the lab's observation broke:[/] {problem['text']}")
    if report.get("shaping"):
        console.print("link: " + ", ".join(report["shaping"]))
    console.print()
    focus, why = _focus(report)
    if focus is not None:
        console.print(f"[dim]one connection of {len(_client_ports(report))}: the client's port {focus}"
                      + (f", {why}" if why else "") + "[/]")
    for row in ladder(report, port=focus):
        console.print(row, soft_wrap=True)
    console.print()
    for line in _summary(report):
        console.print(line, highlight=False)
    for c in report.get("checks", []):
        console.print(f"{_MARKS[outcome_of(c)]} [bold]{c['name']}[/]")
        for key, label in (("expected", "expected"), ("observed", "observed"), ("citation", "rule")):
            line = Text(f"       {label:<9}", "dim")
            line.append(c[key], "dim" if key == "citation" else "")
            console.print(line)
    if report.get("error"):
        console.print(f"[bold red]error:[/] {report['error']}")
    art = report.get("artifacts", {})
    console.print(f"artifacts: {art.get('dir')}/  ({', '.join(art.get('pcaps', []))}, report.json)"
                  f"   took {report.get('duration_s')} s")
    colour = {"pass": "green", "fail": "red"}.get(str(verdict), "yellow")
    console.print(f"[bold {colour}]verdict: {str(verdict).upper()}[/] ({_tally(report.get('checks', []))})")


_MARKS = {PASS: "[green] pass [/]", FAIL: "[bold white on red] FAIL [/]",
          NOT_APPLICABLE: "[dim]  n/a [/]", INCONCLUSIVE: "[bold black on yellow]  ??  [/]"}


def _tally(checks: list[dict[str, Any]]) -> str:
    """"5/7 checks passed, 1 not applicable, 1 inconclusive"."""
    outcomes = [outcome_of(c) for c in checks]
    words = [f"{outcomes.count(PASS)}/{len(outcomes)} checks passed"]
    for outcome, word in ((FAIL, "failed"), (NOT_APPLICABLE, "not applicable"), (INCONCLUSIVE, "inconclusive")):
        if outcome != FAIL and outcomes.count(outcome):
            words.append(f"{outcomes.count(outcome)} {word}")
    return ", ".join(words)


def _client_ports(report: dict[str, Any]) -> set[int]:
    addr = next(iter(report.get("hosts", {}).get("client", {}).get("addresses", {}).values()), None)
    return {s["sport"] for s in report.get("packets", {}).get("client", []) if s["src"] == addr}


def _focus(report: dict[str, Any]) -> tuple[int | None, str | None]:
    """With many connections, the ladder shows one: the one the scenario picks (its
    ladder_focus), and why."""
    if len(_client_ports(report)) <= 3:
        return None, None
    sc = _scenario_of(report)
    picked = sc.ladder_focus(report) if sc is not None and sc.ladder_focus is not None else None
    return picked if picked else (None, None)


def _summary(report: dict[str, Any]) -> list[str]:
    """A scenario's own lines for the terminal (its summary(report)), then a blank line."""
    sc = _scenario_of(report)
    lines = list(sc.summary(report)) if sc is not None and sc.summary is not None else []
    return lines + [""] if lines else []


def _scenario_of(report: dict[str, Any]):
    from scenarios import catalog

    return catalog().get(report.get("scenario", ""))
