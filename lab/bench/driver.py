"""lab.bench's ``main``: choose the backends, measure round by round, summarise every figure,
print it and write it as JSON."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from typing import Any

from rich.console import Console

from ..artifacts import write_text
from ..errors import EnvError, UsageError
from .common import BACKEND_NAMES, SCENARIO, TIMINGS, Stats, Sweeper, mine_in_registry, summarize
from .printout import print_result, progress_line
from .process import bench_process_run, bench_small_commands, bench_terminal_run
from .updown import bench_lab, bench_raw_docker, bench_raw_netns
from .wholerun import bench_scenario

Samples = dict[str, dict[str, list[Any]]]       # backend -> "lab" / "raw" / "run" -> one dict per round


def _choose(backends: list[str] | None, console: Console) -> list[str]:
    from ..backends import BACKENDS

    if backends:
        for b in backends:
            if b not in BACKEND_NAMES:
                raise UsageError(f"unknown backend {b!r}: choose {' or '.join(BACKEND_NAMES)}")
            ok, why = BACKENDS[b].available()
            if not ok:
                raise EnvError(f"backend {b} is not available: {why}")
        return list(dict.fromkeys(backends))
    chosen = []
    for b in BACKEND_NAMES:
        ok, why = BACKENDS[b].available()
        if ok:
            chosen.append(b)
        else:
            console.print(f"[yellow]skipping {b}: {why}[/]")
    if not chosen:
        raise EnvError("no backend can run here (the lab needs root; docker needs a daemon)")
    return chosen


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {"kernel": platform.release(), "cpus": os.cpu_count(),
                            "python": platform.python_version()}
    for key, argv in (("docker", ["docker", "version", "-f", "{{.Server.Version}}"]),
                      ("compose", ["docker", "compose", "version", "--short"]),
                      ("iproute2", ["ip", "-V"])):
        try:
            info[key] = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            info[key] = None
    return info


def _measure(chosen: list[str], runs: int, sweeper: Sweeper, console: Console) -> Samples:
    """*runs* rounds, each measuring every chosen backend in turn (so drift on the machine hits
    them alike); whatever is still registered to this process is swept at the end."""
    from ..runner import interrupts_as_exceptions

    samples: Samples = {b: {"lab": [], "raw": [], "run": [], "process": []} for b in chosen}
    samples["commands"] = {"small": []}
    with interrupts_as_exceptions():            # SIGTERM/SIGHUP unwind through every finally
        try:
            for i in range(runs):
                for b in chosen:
                    lab = bench_lab(b, sweeper)
                    raw = bench_raw_netns(sweeper) if b == "netns" else bench_raw_docker(sweeper)
                    run = bench_scenario(b, sweeper)
                    process = bench_process_run(b) | bench_terminal_run(b)
                    samples[b]["lab"].append(lab)
                    samples[b]["raw"].append(raw)
                    samples[b]["run"].append(run)
                    samples[b]["process"].append(process)
                    console.print(progress_line(i, runs, b, lab, raw, run, process))
                samples["commands"]["small"].append(bench_small_commands())
        finally:
            for lab_id in sorted(mine_in_registry()):     # anything still registered to us
                sweeper.sweep(lab_id)
    return samples


def _col(rows: list[dict[str, Any]], key: str) -> Stats:
    return summarize([r.get(key) for r in rows])


def _lost_ack(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole runs of one backend: summaries of their times, and each run's FINs and verdict."""
    return {
        **{k: _col(rows, k) for k in ("total_s", "protocol_wait_s", "overhead_s", "fin_ack_delay_s")},
        "timings_s": {k: summarize([r["timings_s"][k] for r in rows]) for k in TIMINGS},
        "server_fins": [r["server_fins"] for r in rows],
        "server_fin_offsets_s": [r["server_fin_offsets_s"] for r in rows],
        "verdicts": [r["verdict"] for r in rows],
        "errors": [r["error"] for r in rows if r["error"]],
        "failed_checks": [r["failed_checks"] for r in rows],
    }


def _result(samples: Samples, chosen: list[str], runs: int, started: float,
            sweeper: Sweeper) -> dict[str, Any]:
    """Every figure, samples too, as a JSON-ready dict."""
    return {
        "runs": runs,
        "backends": chosen,
        "scenario": SCENARIO,
        "started": started,
        "duration_s": round(time.time() - started, 3),
        "machine": _machine(),
        "bring_up": {b: {k: _col(samples[b]["lab"], k) for k in ("up_s", "down_s")} for b in chosen},
        "raw_floor": {b: {k: _col(samples[b]["raw"], k) for k in ("up_s", "down_s")
                          } | ({"commands": _col(samples[b]["raw"], "commands")} if b == "netns" else {})
                      for b in chosen},
        "lost_ack": {b: _lost_ack(samples[b]["run"]) for b in chosen},
        "process": {b: {k: _col(samples[b]["process"], k) for k in ("process_s", "outside_run_s", "beyond_waiting_s",
                                                                    "terminal_s", "terminal_beyond_waiting_s",
                                                                    "page_after_exit_s")}
                    | {"verdicts": [r["verdict"] for r in samples[b]["process"]]} for b in chosen},
        "commands": {k: _col(samples["commands"]["small"], k) for k in ("list_s", "help_s")},
        "leftovers_removed": sweeper.leftovers,
    }


def main(runs: int = 5, backends: list[str] | None = None, json_out: str | None = None,
         console: Console | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table and its explanation, return (and optionally write to
    *json_out*) every figure."""
    console = console or Console()
    if int(runs) < 1:
        raise UsageError(f"--runs {runs}: give at least 1")
    runs = int(runs)
    chosen = _choose(backends, console)
    sweeper = Sweeper()
    started = time.time()
    samples = _measure(chosen, runs, sweeper, console)
    result = _result(samples, chosen, runs, started, sweeper)
    print_result(result, sweeper.leftovers, console)
    if json_out:
        write_text(json_out, json.dumps(result, indent=2) + "\n")
        console.print(f"[dim]figures written to {json_out}[/]")
    return result


def capacity_main(backends: list[str] | None = None, limit: int = 64, json_out: str | None = None,
                  console: Console | None = None) -> dict[str, Any]:
    """`invoke bench --capacity`: per backend, the most lost-ack labs this machine runs at once with
    every run right and every sample gap under 10 ms (lab.bench.capacity); printed and returned."""
    from .capacity import find_capacity
    from .printout import capacity_line, print_capacity

    console = console or Console()
    if int(limit) < 1:
        raise UsageError(f"--limit {limit}: give at least 1")
    chosen = _choose(backends, console)
    from ..runner import interrupts_as_exceptions

    with interrupts_as_exceptions():
        found = {b: find_capacity(b, int(limit), lambda s, b=b: console.print(capacity_line(b, s)))
                 for b in chosen}
    result = {"machine": _machine(), "capacity": found}
    print_capacity(result, console)
    if json_out:
        write_text(json_out, json.dumps(result, indent=2) + "\n")
        console.print(f"[dim]figures written to {json_out}[/]")
    return result
