"""What lab.bench prints: a line per measured round, the table of medians, the explanation of what
each figure is, and the notes (runs that did not pass, what a tear-down left behind)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from .common import SCENARIO, TIMINGS, Stats, summarize


def progress_line(i: int, runs: int, b: str, lab: dict, raw: dict, run: dict, process: dict) -> str:
    """One round's figures, printed as it finishes."""
    pw = run["protocol_wait_s"]
    return (f"[dim]run {i + 1}/{runs} {b:<6} lab up {lab['up_s']:.3f} down {lab['down_s']:.3f} | "
            f"raw up {raw['up_s']:.3f} down {raw['down_s']:.3f} | {SCENARIO} "
            f"{run['total_s']:.2f} s ({'?' if pw is None else f'{pw:.2f}'} waiting, "
            f"{run['verdict']}) | invoke run {process['process_s']:.2f} s ({process['verdict']})[/]")


def _cell(s: Stats) -> str:
    if s["median"] is None:
        return "-"
    return f"{s['median']:.3f}  [dim]({s['min']:.3f}–{s['max']:.3f})[/]"


def _table(result: dict[str, Any]) -> Table:
    bs = result["backends"]
    t = Table(title=f"twlab bench: seconds, median (min–max) of {result['runs']} runs",
              title_justify="left", header_style="bold")
    t.add_column("measurement")
    for b in bs:
        t.add_column(b, justify="right")
    lab, raw, run = result["bring_up"], result["raw_floor"], result["lost_ack"]
    t.add_row("lab up    backend.up()", *(_cell(lab[b]["up_s"]) for b in bs))
    t.add_row("raw up    (the floor)", *(_cell(raw[b]["up_s"]) for b in bs))
    t.add_row("lab down  backend.down()", *(_cell(lab[b]["down_s"]) for b in bs))
    t.add_row("raw down  (the floor)", *(_cell(raw[b]["down_s"]) for b in bs))
    t.add_section()
    t.add_row(f"{SCENARIO} run, wall time", *(_cell(run[b]["total_s"]) for b in bs))
    t.add_row("  protocol waiting", *(_cell(run[b]["protocol_wait_s"]) for b in bs))
    t.add_row("  lab overhead", *(_cell(run[b]["overhead_s"]) for b in bs))
    t.add_row("    of it, the server's delayed ACK of the client's FIN",
              *(_cell(run[b].get("fin_ack_delay_s") or summarize([])) for b in bs))
    for k in TIMINGS:
        t.add_row(f"    {k}", *(_cell(run[b]["timings_s"][k]) for b in bs), style="dim")
    t.add_section()
    proc, cmds = result["process"], result["commands"]
    t.add_row(f"`invoke run {SCENARIO}`, whole process", *(_cell(proc[b]["process_s"]) for b in bs))
    t.add_row("  beyond protocol waiting", *(_cell(proc[b]["beyond_waiting_s"]) for b in bs))
    t.add_row("  outside the run (start-up, drawing)", *(_cell(proc[b]["outside_run_s"]) for b in bs))
    t.add_row(f"`invoke run {SCENARIO}` on a terminal", *(_cell(proc[b]["terminal_s"]) for b in bs))
    t.add_row("  beyond protocol waiting", *(_cell(proc[b]["terminal_beyond_waiting_s"]) for b in bs))
    t.add_row("  report.html there, after the exit", *(_cell(proc[b]["page_after_exit_s"]) for b in bs))
    t.add_row("`invoke list`, whole process", *(_cell(cmds["list_s"]) for _ in bs))
    t.add_row("`invoke --help`, whole process", *(_cell(cmds["help_s"]) for _ in bs))
    return t


def _diff(lab: float, raw: float) -> str:
    d = lab - raw
    return f"{abs(d):.3f} s {'more' if d >= 0 else 'less'} than"


def _explain(result: dict[str, Any]) -> str:
    bs, lab, raw, run = result["backends"], result["bring_up"], result["raw_floor"], result["lost_ack"]
    parts = []
    for b in bs:
        lu, ru = lab[b]["up_s"]["median"], raw[b]["up_s"]["median"]
        ld, rd = lab[b]["down_s"]["median"], raw[b]["down_s"]["median"]
        pw, ov = run[b]["protocol_wait_s"]["median"], run[b]["overhead_s"]["median"]
        if None not in (lu, ru, ld, rd):
            parts.append(f"{b}: backend.up() takes {_diff(lu, ru)} the raw bring-up, backend.down() "
                         f"{_diff(ld, rd)} the raw tear-down")
        if None not in (pw, ov):
            parts.append(f"of a {SCENARIO} run {pw:.2f} s is protocol waiting and {ov:.2f} s lab overhead")
    return (
        "Lab up/down time the backend classes alone (plan(), which picks free subnets and checks the "
        "image, is not timed); raw up/down, the floor, make the same three hosts, two links, addresses, "
        "routes and sysctls with the plainest tools (netns: "
        + (f"{int(raw['netns']['commands']['median'] or 0)} " if "netns" in bs else "")
        + "`ip` commands, one process each, then `ip netns del` per namespace; docker: `docker "
        "compose up -d` and `down`), so lab − raw is what the backend itself costs; a negative "
        "difference means the floor is not a floor for that step (the netns backend talks netlink "
        "from one process, where each `ip` command is a fork and exec). "
        "Docker's raw up stops when compose returns (containers running); backend.up() also waits "
        "until each container's command has set its routes and removed its default route. "
        f"A {SCENARIO} run's wall time is its report's duration_s (`invoke run` from start to "
        "report.json); protocol waiting is the server kernel's FIN retransmission backoff "
        "(tail-loss probe, then RTOs doubling from 200 ms), measured on the wire from its first FIN "
        "to its last: no lab can make it shorter. Lab overhead is the rest (wall time − waiting); it "
        "holds some protocol waiting too: the server's ACK of the client's FIN, which Linux delays "
        "(a socket entering CLOSE_WAIT is in pingpong mode: TCP_DELACK_MIN, 40 ms), shown in its row: "
        "bring-up, starting the captures, faults and socket sampler (start_s includes bring_up_s), "
        "the peers' handshake and data, tear-down, and reading the pcaps to judge; the dim rows are "
        "the run's own timings_s (scenario_s includes the waiting). "
        f"The last rows are whole processes as a user waits for them: `invoke run {SCENARIO} --json` "
        "from start to exit, how much of it is not protocol waiting, and how much lies outside the "
        "report's duration_s (the interpreter and imports before, drawing and printing after); "
        "`invoke list` and `--help` (measured once per round, the same in every column). "
        + ("; ".join(parts) + "." if parts else "")
    )


def print_result(result: dict[str, Any], leftovers: list[str], console: Console) -> None:
    """The table, its explanation, and a note on each backend whose runs did not all pass and on
    anything a timed tear-down left behind."""
    console.print()
    console.print(_table(result))
    console.print(_explain(result), highlight=False, markup=False)
    for b in result["backends"]:
        got = result["lost_ack"][b]
        bad = [f"run {i + 1}: {v}" + (f" ({', '.join(c['name'] for c in fc)})" if fc else "")
               for i, (v, fc) in enumerate(zip(got["verdicts"], got["failed_checks"])) if v != "pass"]
        if bad:
            console.print(f"[yellow]note: {SCENARIO} on {b} did not pass in every run "
                          f"(its timings still count): {'; '.join(bad)}[/]", highlight=False)
    if leftovers:
        console.print(f"[yellow]note: a timed tear-down left things behind (removed afterwards): "
                      f"{'; '.join(leftovers)}[/]")


def capacity_line(backend: str, step: dict[str, Any]) -> str:
    """One step of the capacity search, printed as it finishes."""
    gap = "-" if step["max_gap_ms"] is None else f"{step['max_gap_ms']:.1f} ms"
    return (f"[dim]{backend:<6} {step['labs']:>3} labs at once: {step['passed']}/{step['labs']} passed, "
            f"worst sample gap {gap}, {step['wall_s']:.1f} s: {'held' if step['held'] else 'did not hold'}[/]")


def print_capacity(result: dict[str, Any], console: Console) -> None:
    """Each backend's figure, and what it means."""
    cpus = result["machine"].get("cpus")
    for b, got in result["capacity"].items():
        more = " (the limit: it may hold more; raise --limit)" if got["limit_reached"] else ""
        console.print(f"[bold]{b}: {got['capacity']} lost-ack labs at once[/]{more} on {cpus} CPUs, every run "
                      f"passed and every socket sample within {got['gap_threshold_ms']:g} ms of the one before")
    console.print("Each step starts that many labs together (`run lost-ack --repeat N --parallel N`); the "
                  "search doubles until a step fails, then halves the gap. A busy machine lowers the figure: "
                  "measure on a quiet one.", highlight=False)
