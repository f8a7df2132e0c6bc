"""Showing a run: the ladder diagram drawn from the captures, the checks, where the pcaps are."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text

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


def _same(a: dict, b: dict) -> bool:
    keys = ("src", "sport", "dst", "dport", "flags", "seq", "ack", "length", "tsval")
    return all(a[k] == b[k] for k in keys)


def ladder(report: dict[str, Any], left: str = "client", right: str = "server") -> list[Text]:
    """Rows of the classic client/server diagram, each segment drawn from its sender's capture
    and marked lost when the receiver's capture lacks it; socket states beside each end."""
    packets = report.get("packets", {})
    addr = {h: v["addresses"] for h, v in report.get("hosts", {}).items()}
    a_ip = next(iter(addr.get(left, {}).values()), None)
    b_ip = next(iter(addr.get(right, {}).values()), None)
    sent = [s for s in packets.get(left, []) if s["src"] == a_ip] + \
           [s for s in packets.get(right, []) if s["src"] == b_ip]
    if not sent:
        return [Text("(no packets captured)")]
    isn: dict[tuple, list[tuple[float, int]]] = {}     # per connection: its SYNs (time, seq)
    for s in sorted(sent, key=lambda s: s["t"]):
        if "SYN" in s["flags"]:
            isn.setdefault((s["src"], s["sport"], s["dst"], s["dport"]), []).append((s["t"], s["seq"]))
    t0 = min(s["t"] for s in sent)
    rows: list[tuple[float, Text]] = []
    for s in sent:
        to = right if s["src"] == a_ip else left
        arrived = next((r for r in packets.get(to, []) if _same(r, s)), None)
        label = _label(s, isn)
        rightward = s["src"] == a_ip
        if arrived:
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
    console.print()
    for row in ladder(report):
        console.print(row, soft_wrap=True)
    console.print()
    for c in report.get("checks", []):
        mark = "[green] pass [/]" if c["passed"] else "[bold white on red] FAIL [/]"
        console.print(f"{mark} [bold]{c['name']}[/]")
        for key, label in (("expected", "expected"), ("observed", "observed"), ("citation", "rule")):
            line = Text(f"       {label:<9}", "dim")
            line.append(c[key], "dim" if key == "citation" else "")
            console.print(line)
    if report.get("error"):
        console.print(f"[bold red]error:[/] {report['error']}")
    art = report.get("artifacts", {})
    console.print(f"artifacts: {art.get('dir')}/  ({', '.join(art.get('pcaps', []))}, report.json)"
                  f"   took {report.get('duration_s')} s")
    colour = "green" if verdict == "pass" else "red"
    n_ok = sum(c["passed"] for c in report.get("checks", []))
    console.print(f"[bold {colour}]verdict: {str(verdict).upper()}[/] "
                  f"({n_ok}/{len(report.get('checks', []))} checks passed)")
