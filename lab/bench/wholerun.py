"""lab.bench's measurement 3: a whole lost-ack run (``lab.runner.run_scenario``), its wall time
split into protocol waiting and lab overhead, plus the run's own timings_s."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from .common import SCENARIO, TIMINGS, Sweeper, mine_in_registry


def split_run(report: dict[str, Any]) -> dict[str, Any]:
    """Total wall time, protocol waiting (server's first to last FIN on its own capture) and
    lab overhead (the rest) of one run's report, plus its timings_s."""
    addrs = (report.get("hosts", {}).get("server", {}).get("addresses") or {}).values()
    server = next(iter(addrs), None)
    fins = sorted(p["t"] for p in report.get("packets", {}).get("server", [])
                  if p["src"] == server and "FIN" in p["flags"].split(","))
    total = float(report["duration_s"])
    waiting = fins[-1] - fins[0] if fins else None
    return {
        "fin_ack_delay_s": _fin_ack_delay(report, server),
        "total_s": total,
        "protocol_wait_s": waiting,
        "overhead_s": total - waiting if waiting is not None else None,
        "server_fins": len(fins),
        "server_fin_offsets_s": [round(t - fins[0], 4) for t in fins],
        "timings_s": {k: report.get("timings_s", {}).get(k) for k in TIMINGS},
        "verdict": report.get("verdict"),
        "error": report.get("error"),
        "failed_checks": [{"name": c.get("name"), "expected": c.get("expected"), "observed": c.get("observed")}
                          for c in report.get("checks", []) if not c.get("passed")],
    }


def _fin_ack_delay(report: dict[str, Any], server: str | None) -> float | None:
    """How long the server took to ACK the client's FIN (server.pcap): protocol waiting too, but
    not in protocol_wait_s, which is the issue's measure (the server's first to last FIN). Linux
    delays that ACK: tcp_fin() puts a socket entering CLOSE_WAIT in pingpong mode, so the ACK waits
    for the delayed-ACK timer (TCP_DELACK_MIN, 40 ms) - 41-48 ms of every lost-ack run here."""
    segs = report.get("packets", {}).get("server", [])
    fin = next((p for p in segs if p["src"] != server and "FIN" in p["flags"].split(",")), None)
    if fin is None:
        return None
    want = (fin["seq"] + fin.get("length", 0) + 1) & 0xFFFFFFFF
    ack = next((p for p in segs if p["src"] == server and p["t"] >= fin["t"] and p["ack"] == want
                and "ACK" in p["flags"].split(",")), None)
    return ack["t"] - fin["t"] if ack else None


def bench_scenario(name: str, sweeper: Sweeper) -> dict[str, Any]:
    from ..runner import run_scenario

    seen: set[str] = set()

    def progress(_line: str) -> None:       # every line after Lab.start registers the lab
        seen.update(mine_in_registry())

    tmp = Path(tempfile.mkdtemp(prefix="twlab-bench-"))
    try:
        report = run_scenario(SCENARIO, backend=name, artifacts=tmp / "run", progress=progress)
        seen.add(report["lab_id"])
        return split_run(report)
    finally:
        try:
            for lab_id in sorted(seen):
                sweeper.sweep(lab_id)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
