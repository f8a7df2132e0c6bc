"""Showing a run: the ladder diagram drawn from the captures, the checks, where the pcaps are."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.text import Text

from .ladder import ARRIVED, UNKNOWN, Row, ladder_rows, run_addresses
from .verdict import FAIL, INCONCLUSIVE, NOT_APPLICABLE, PASS, outcome_of

__all__ = ["ladder", "show", "terminal_console", "student_mode"]

_WIDTH = 44   # the arrow between the two end columns


def ladder(report: dict[str, Any], left: str = "client", right: str = "server",
           port: int | None = None) -> list[Text]:
    """The classic client/server diagram in the terminal (lab.ladder's rows): each segment from
    its sender's capture, marked lost when the receiver's capture lacks it, "?" when that capture
    had ended; socket states beside each end; the router's faults. With *port*, only the
    connection from that port of *left*."""
    rows = ladder_rows(report, left, right, port)
    if not rows:
        return [Text("(no packets captured)")]
    head = Text(f"{'time (s)':>8}  {left:<{_WIDTH // 2}}{right:>{_WIDTH // 2 + 2}}", "bold")
    return [head] + [_draw(r, left, right) for r in rows]


def _draw(r: Row, left: str, right: str) -> Text:
    if r.kind == "fault":
        return Text(f"{r.t:8.3f}  · router: {r.text}", "magenta")
    if r.kind == "state":
        text = Text(f"{r.t:8.3f}  ", "dim")
        words = f"{r.host}: {r.text}"
        if r.host != left:
            text.append(" " * (_WIDTH + 2 - len(words)))
        text.append(words, "yellow")
        return text
    arrow, style = _arrow(r)
    line = Text(f"{r.t:8.3f}  ")
    line.append("│", "dim")
    line.append(arrow, style)
    line.append("│", "dim")
    return line


def _arrow(r: Row) -> tuple[str, str]:
    if r.host == "router":                         # a replay: sent from the middle of the path
        body = f" {r.text} ".center(_WIDTH - 2, "┄")
        return ("┄" + body + "▶") if r.rightward else ("◀" + body + "┄"), "magenta"
    if r.fate == UNKNOWN:                          # the receiver's capture had ended
        body = f" {r.text} ? not captured "
        return ((("─" * 2 + body).ljust(_WIDTH - 1) + "?") if r.rightward else
                ("?" + (body + "─" * 2).rjust(_WIDTH - 1))), "yellow"
    if r.fate == ARRIVED:
        body = f" {r.text} ".center(_WIDTH - 2, "─")
        return (("─" + body + "▶") if r.rightward else ("◀" + body + "─"),
                "red" if "RST" in r.flags else "cyan" if "FIN" in r.flags else "")
    body = f" {r.text} ✕ lost "
    pad = (_WIDTH - len(body) - 1) // 2
    return ((("─" * pad + body + "✕").ljust(_WIDTH)) if r.rightward else
            ("✕" + body + "─" * pad).rjust(_WIDTH)), "bold red"


def terminal_console(file: IO[str] | None = None) -> Console:
    """rich's Console for the terminal views. On a terminal it takes the terminal's width; piped
    (a CI log, `| less`) a line is never wrapped (rich would cut it at 80 columns, mid-phrase),
    and rules and tables get $COLUMNS, else 120 columns."""
    term = Console(file=file)
    if term.is_terminal:
        return term
    return Console(file=file, soft_wrap=True, width=None if os.environ.get("COLUMNS") else 120)


def student_mode(report: dict[str, Any]) -> bool:
    """Was the run made for students (`invoke run --student`): its views show each check's
    verdict alone, not the expected and observed values and the rule that answer the lab sheet's
    questions. Recorded in report.json's options, so every view of the run (the terminal's, the
    HTML report) hides them alike."""
    return bool((report.get("options") or {}).get("student"))


def show(report: dict[str, Any], console: Console | None = None, student: bool | None = None) -> None:
    """The run in the terminal: the ladder, the checks, the verdict. *student* (by default the
    run's own option) shows each check's outcome and name only."""
    console = console or terminal_console()
    student = student_mode(report) if student is None else student
    verdict = report.get("verdict")
    console.rule(f"[bold]{report['scenario']}[/]: {report.get('intent', '')}")
    console.print(f"backend [bold]{report.get('backend')}[/], kernel {report.get('kernel')} "
                  f"(HZ={report.get('kernel_hz')}), lab {report.get('lab_id')}, IPv{report.get('family') or 4}"
                  + (" (client v4-mapped)" if report.get("mapped_client") else ""))
    # the addresses on a line of their own (three IPv6 ones fit in 100 columns), or one host a line
    # where they do not: never a host name on one line and its address on the next
    named = [f"{h} {a}" for h, a in run_addresses(report).items() if a]
    for line in [", ".join(named)] if len(", ".join(named)) <= console.width else named:
        console.print(Text(line), soft_wrap=True)
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
        if not student:
            _check_lines(console, c)
    if student:
        console.print("[dim](a run for students: each check's verdict alone; the lab sheet asks for the "
                      "numbers)[/]")
    if report.get("error"):
        console.print(f"[bold red]error:[/] {report['error']}")
    art = report.get("artifacts", {})
    page = ", report.html" if art.get("dir") and (Path(art["dir"]) / "report.html").is_file() else \
        ", report.html being drawn" if art.get("page") == "drawing" else ""
    console.print(f"artifacts: {art.get('dir')}/  ({', '.join(art.get('pcaps', []))}, report.json{page})"
                  f"   took {report.get('duration_s')} s")
    colour = {"pass": "green", "fail": "red"}.get(str(verdict), "yellow")
    console.print(f"[bold {colour}]verdict: {str(verdict).upper()}[/] ({_tally(report.get('checks', []))})")


def _check_lines(console: Console, check: dict[str, Any]) -> None:
    """A check's expected, observed and rule, each wrapped between words under its own start (a
    long line of endpoints, "[fd3c:9a1e:44b0:1::10]:41002", is never cut or sent to column 0)."""
    indent = 16
    for key, label in (("expected", "expected"), ("observed", "observed"), ("citation", "rule")):
        body = Text(check[key], "dim" if key == "citation" else "")
        # piped (terminal_console's soft_wrap): a CI log keeps each line whole, for grep
        parts = [body] if console.soft_wrap else body.wrap(console, max(console.width - indent, 20))
        for n, part in enumerate(parts):
            part.rstrip()
            line = Text(f"       {label:<9}" if n == 0 else " " * indent, "dim")
            console.print(line.append_text(part), soft_wrap=True)


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
    addr = run_addresses(report).get("client")
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
    from scenarios import find

    return find(report.get("scenario", ""))


focus, summary_lines, scenario_of = _focus, _summary, _scenario_of     # the HTML report shows the same
