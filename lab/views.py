"""What the tasks print: the tables of `run all`, `run --repeat`, `check` and `stability` (rich).
A run's own view (the ladder, the checks) is lab.report; the matrix's table is lab.matrix."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .report import terminal_console
from .verdict import FAIL, INCONCLUSIVE, outcome_of

__all__ = ["catalog_table", "repeat_lines", "check_table", "stability_table"]

_COLOURS = {"pass": "green", "fail": "red", "skipped": "yellow", "error": "yellow"}


def catalog_table(summary: dict[str, Any]) -> None:
    skipped = summary.get("skipped", 0)
    table = Table(title=f"twlab catalog: {summary['passed']}/{len(summary['scenarios']) - skipped} passed"
                        + (f", {skipped} skipped" if skipped else "") + f" in {summary['wall_s']} s")
    for col in ("scenario", "verdict", "checks", "time (s)", "artifacts"):
        table.add_column(col)
    for r in summary["scenarios"]:
        checks = r.get("checks") or {}
        table.add_row(r.get("name") or r["scenario"], f"[{_COLOURS.get(r['verdict'], 'yellow')}]{r['verdict']}[/]",
                      f"{sum(checks.values())}/{len(checks)}" if checks else
                      (r.get("error") or r.get("reason") or "")[:60],
                      str(r.get("duration_s", "")), r["artifacts"])
    terminal_console().print(table)


def repeat_lines(summary: dict[str, Any]) -> list[str]:
    name = summary.get("name") or summary["scenario"]
    return [f"{name}: {summary['passed']}/{summary['repeat']} passed, {summary['failed']} failed, "
            f"{summary['errors']} errors, {summary['parallel']} at a time, {summary['wall_s']} s; per check: "
            + ", ".join(f"{k} {v}" for k, v in summary["check_pass_rate"].items()),
            f"artifacts: {summary['artifacts']}/ (summary.json, run-NNN/)"]


def check_table(summary: dict[str, Any]) -> None:
    """`invoke check`'s summary: a table of scenarios and required behaviours, then each failure
    and inconclusive check with its expected, observed and rule, then the verdict."""
    console = terminal_console()
    n = summary["counts"]
    table = Table(title=f"twlab check on {summary['kernel']}: {n['passed']}/{n['scenarios'] - n.get('skipped', 0)} "
                        "scenarios passed" + (f" ({n['skipped']} skipped)" if n.get("skipped") else "")
                        + f", {n['checks'] - n['check_failures']}/{n['checks']} checks, "
                        f"{n['requirements'] - n['requirement_failures']}/{n['requirements']} required "
                        f"behaviours, {summary['wall_s']} s")
    for col in ("scenario", "verdict", "checks", "not matched / why"):
        table.add_column(col, overflow="fold")
    for r in summary["scenarios"]:
        checks = r.get("checks") or []
        why = ", ".join(f"{ch['name']}" + ("" if outcome_of(ch) == FAIL else f" ({outcome_of(ch)})")
                        for ch in checks if not ch["passed"]) or r.get("reason") or r.get("error") or ""
        table.add_row(r.get("name") or r["scenario"], f"[{_COLOURS[r['verdict']]}]{r['verdict']}[/]",
                      f"{sum(ch['passed'] for ch in checks)}/{len(checks)}" if checks else "", escape(why))
    for q in summary["requirements"]:
        table.add_row(escape(f"required: {q['name']}"), "[green]pass[/]" if q["passed"] else "[red]fail[/]",
                      "", escape(q["observed"] if not q["passed"] else ""))
    console.print(table)
    _check_details(console, summary)
    console.print(f"verdict: {summary['verdict'].upper()} (exit {summary['exit_code']})")


def _check_details(console: Console, summary: dict[str, Any]) -> None:
    for r in summary["scenarios"]:
        for ch in r.get("checks") or []:
            if outcome_of(ch) in (FAIL, INCONCLUSIVE):
                mark = "[red]fail[/]" if outcome_of(ch) == FAIL else "[yellow]inconclusive[/]"
                console.print(f"{mark}  {escape(r.get('name') or r['scenario'])} / {escape(ch['name'])}\n"
                              f"      expected {escape(ch['expected'])}\n      observed {escape(ch['observed'])}\n"
                              f"      rule     {escape(ch['citation'])}")
    for q in summary["requirements"]:
        if not q["passed"]:
            console.print(f"[red]fail[/]  required: {escape(q['name'])} ({escape(str(summary['profile']))}, "
                          f"line {q['line']})\n      required {escape(q['expected'])}\n"
                          f"      observed {escape(q['observed'])}")


def stability_table(results: dict[str, dict], names: list[str], backends: list[str], runs: int) -> None:
    """*names*: the rows, SCENARIO or SCENARIO/v6 (lab.stability's keys are NAME/BACKEND)."""
    table = Table(title=f"twlab stability: {runs} runs in a row per scenario and backend")
    for col in ("scenario", *backends):
        table.add_column(col)
    for name in names:
        row = [name]
        for be in backends:
            r = results[f"{name}/{be}"]
            if r.get("skipped"):
                row.append(f"[yellow]skipped[/]: {escape(r['skipped'])}")
                continue
            colour = "green" if r["passed"] == runs else "red"
            row.append(f"[{colour}]{r['passed']}/{runs}[/] ({r['wall_s']:.0f} s)")
        table.add_row(*row)
    terminal_console().print(table)
