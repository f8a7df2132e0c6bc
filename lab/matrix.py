"""`invoke matrix`: the same scenarios on several kernels, side by side.

    m = run_matrix(["host", "debian-12"], ["lost-ack", "time-wait-duration"], out=Path("matrix"))
    print(markdown(m))

"host" runs on this machine's kernel (lab.runner.run_scenario). Any other kernel is run by
``lab.vm.run(kernel, twlab_args, artifacts, progress) -> (exit_code, stdout)``, which boots that
kernel and runs ``invoke run SCENARIO --backend netns --artifacts ARTIFACTS --json`` inside it
(ARTIFACTS is shared with the guest at the same absolute path), leaving report.json there; lab.vm is imported lazily, and when it is missing or fails that kernel's cells say
why (never a made-up result). A cell holds the verdict and the key observed values of the
scenario (KEY_VALUES: the numbers its checks used, from report.json's checks[].values) and the
TIME-WAIT counters that moved; a row whose values differ between kernels is marked.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import LabError, NetemMissing, UsageError
from .verdict import FAIL, INCONCLUSIVE, NOT_APPLICABLE, outcome_of

__all__ = ["KEY_VALUES", "COUNTERS", "KeyValue", "run_matrix", "cell_from_report", "rows",
           "markdown", "show"]

HOST = "host"


@dataclass(frozen=True)
class KeyValue:
    """One observed number of a scenario: *path* in the values of the check(s) matching *check*
    (fnmatch). Kernels differ when the numbers are further apart than abs_tol or rel_tol (a
    fraction); by default any difference counts."""

    label: str
    check: str
    path: str
    abs_tol: float = 0.0
    rel_tol: float = 0.0
    relative_to_first: bool = False      # a list of absolute times: show them from the first
    none_means: str | None = None        # what an observed null says (e.g. the socket was gone)
    tally: bool = False                  # a dict keyed by something run-specific (ports): count its values


KEY_VALUES: dict[str, list[KeyValue]] = {
    "lost-ack": [
        KeyValue("TIME-WAIT armed (ms)", "time-wait-armed-for-60s", "first_expires_ms", abs_tol=50),
        KeyValue("server FINs (1 + retransmissions)", "server-retransmits-fin", "fin_count"),
        KeyValue("FIN times (s from the first)", "server-retransmits-fin", "fin_times",
                 rel_tol=0.1, abs_tol=0.02, relative_to_first=True),
        KeyValue("FIN intervals (s)", "server-retransmits-fin", "intervals_s", rel_tol=0.1, abs_tol=0.02),
        KeyValue("TIME-WAIT timer after each FIN (ms)", "time-wait-timer-restarts", "due_after_fin_ms",
                 abs_tol=50),
        KeyValue("TCPTimeWaitOverflow (no TIME-WAIT)", "no-time-wait-state", "TCPTimeWaitOverflow"),
    ],
    "time-wait-duration": [
        KeyValue("TIME-WAIT length (s)", "time-wait-lasts-60s", "sampled_s", abs_tol=0.5),
        KeyValue("TIME-WAIT armed (ms)", "time-wait-lasts-60s", "first_expires_ms", abs_tol=50),
        KeyValue("timer-wheel slack (s)", "time-wait-lasts-60s", "tolerance_late_s"),
        KeyValue("orphan FIN-WAIT-2 (s)", "orphan-fin-wait2-follows-tcp_fin_timeout", "sampled_s", abs_tol=0.5),
        KeyValue("TW at arming", "tw-counters-at-arming", "TW"),
        KeyValue("TWKilled at arming", "tw-counters-at-arming", "TWKilled"),
    ],
    "retransmitted-fin": [
        KeyValue("FIN times (ms)", "tlp-then-rto-doubling", "fin_times_ms", rel_tol=0.1, abs_tol=20),
        KeyValue("retransmission kinds", "tlp-then-rto-doubling", "kinds"),
        KeyValue("first RTO (ms)", "tlp-then-rto-doubling", "rto0_ms", rel_tol=0.1),
        KeyValue("RTO retransmissions", "orphan-retries-count", "observed_rto_retransmissions"),
        KeyValue("gave up after (ms)", "give-up-when-budget-spent", "gone_after_first_fin_ms", rel_tol=0.1),
    ],
    "five-tuple": [
        KeyValue("tcp_tw_reuse", "connect-same-4-tuple-a-later", "tcp_tw_reuse"),
        KeyValue("tw reuse delay (ms)", "connect-same-4-tuple-a-later", "tcp_tw_reuse_delay_ms"),
        KeyValue("connect after the delay", "connect-same-4-tuple-a-later", "error"),
        KeyValue("connect after the delay: tried at (ms)", "connect-same-4-tuple-a-later",
                 "since_time_wait_ms", rel_tol=0.2),
        KeyValue("connect at once", "connect-same-4-tuple-a-now", "error"),
        KeyValue("new ISN - old snd_nxt", "recycled-isn-above-old-snd-nxt", "recycled.0.difference"),
        KeyValue("TWRecycled", "tw-recycled-counter", "TWRecycled"),
    ],
    "tw-assassination": [
        KeyValue("tcp_rfc1337", "time-wait-*", "tcp_rfc1337"),
        KeyValue("TIME-WAIT after the RST", "time-wait-*", "state_after", none_means="gone (killed)"),
        KeyValue("killed after the RST (ms)", "time-wait-*", "gone_after_rst_ms", abs_tol=50),
        KeyValue("PAWSTimewait", "paws-does-not-prevent-it", "PAWSTimewait"),
    ],
    "tw-buckets": [
        KeyValue("tcp_max_tw_buckets", "buckets-fill-in-close-order", "limit"),
        KeyValue("TIME-WAIT sockets at the end", "exactly-n-time-wait", "time_wait_at_end"),
        KeyValue("late FIN answers", "late-fin-ack-or-rst", "answers", tally=True),
        KeyValue("TCPTimeWaitOverflow", "overflow-counters", "TCPTimeWaitOverflow"),
    ],
    "tw-reopen": [
        KeyValue("SYN ahead accepted", "seq-ahead-syn-judged-by-time-wait", "accepted"),
        KeyValue("SYN behind accepted", "seq-behind-syn-judged-by-time-wait", "accepted"),
        KeyValue("new ISN - old snd_nxt", "seq-ahead-new-isn-above-old", "difference"),
        KeyValue("RFC 1122 cond. (2): TIME-WAIT restored", "rfc1122-condition-2-*", "time_wait_restored"),
    ],
    "wandering-duplicates": [
        KeyValue("TIME-WAIT timer after the replay (ms)", "time-wait-timer-restarted", "due_after_replay_ms",
                 abs_tol=50),
        KeyValue("PAWSTimewait", "paws-in-time-wait", "PAWSTimewait"),
        KeyValue("ISN clock (per s)", "isn-clock", "isns.0.per_second", rel_tol=0.01),
        KeyValue("old bytes delivered", "application-reads-*", "old_markers"),
    ],
    "who-closes-first": [
        KeyValue("client first: client TIME-WAIT", "client-first-*", "client_time_wait"),
        KeyValue("server first: server TIME-WAIT", "server-first-*", "server_time_wait"),
        KeyValue("simultaneous: both TIME-WAIT", "simultaneous-both-hold-time-wait", "time_wait"),
    ],
    "lossy-link": [
        # counts of a random process: each run draws its own losses (no seed on 6.1), so only a
        # large difference says something about the kernel
        KeyValue("final ACKs lost (of 100 closes)", "lost-final-ack-*", "final_ack_lost", abs_tol=20),
        KeyValue("saved by TIME-WAIT's re-ACK", "lost-final-ack-saved-by-time-wait", "saved_by_reack", abs_tol=20),
        KeyValue("closes ended by a RST", "lost-final-ack-*", "ended_by_rst", abs_tol=20),
        KeyValue("server's wait after a lost final ACK, min (ms)", "lost-final-ack-costs-an-rto",
                 "distribution.final ACK lost.server_wait_ms.min", abs_tol=50),
        KeyValue("close time, median (ms)", "lost-final-ack-costs-an-rto", "distribution.all.close_ms.p50",
                 rel_tol=0.5),
        KeyValue("netem seed reported", "loss-matches-the-link", "seeded"),
    ],
    "restart-reuseaddr": [
        KeyValue("neither SO_REUSEADDR: bind", "neither-bind", "error"),
        KeyValue("both: bind", "both-bind", "error"),
        KeyValue("old without, new with: bind", "old-without-new-with-bind", "error"),
        KeyValue("live listener: bind", "live-listener-bind", "error"),
    ],
}

# scenarios whose counters count a random process (netem loss): kernels differ only when
# different counters move, not when the counts do
RANDOM_COUNTS = {"lossy-link"}

# the TIME-WAIT story in nstat (FACTS.md §4); a cell lists those that moved, per host
COUNTERS = ("TcpExtTW", "TcpExtTWKilled", "TcpExtTWRecycled", "TcpExtTCPTimeWaitOverflow",
            "TcpExtPAWSTimewait", "TcpExtPAWSEstab", "TcpExtTCPACKSkippedTimeWait",
            "TcpExtTCPLossProbes", "TcpExtTCPAbortOnTimeout", "TcpRetransSegs", "TcpOutRsts")


# -- one cell -----------------------------------------------------------------------------------

def cell_from_report(report: dict[str, Any]) -> dict[str, Any]:
    """What the matrix shows of one report.json."""
    import fnmatch

    checks = report.get("checks") or []
    values: dict[str, Any] = {}
    for kv in KEY_VALUES.get(report.get("scenario", ""), []):
        head = kv.path.split(".")[0]
        found = [c for c in checks if fnmatch.fnmatchcase(c["name"], kv.check)
                 and head in (c.get("values") or {})]
        if not found:
            continue                                 # e.g. the overflow row when TIME-WAIT had room
        v = _path(found[0].get("values") or {}, kv.path)
        if v is None and kv.none_means:
            v = kv.none_means
        if kv.tally and isinstance(v, dict):
            v = {str(x): list(v.values()).count(x) for x in sorted(set(map(str, v.values())))}
        if kv.relative_to_first and isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v):
            v = [round(x - v[0], 3) for x in v]
        if kv.path == "error" and "errno" in (found[0].get("values") or {}) and v is None:
            v = "ok"                                 # a call that succeeded: no error
        values[kv.label] = v
    counters: dict[str, int] = {}
    for host, deltas in sorted((report.get("counters") or {}).items()):
        for name in COUNTERS:
            if deltas.get(name):
                counters[f"{host} {name.removeprefix('TcpExt')}"] = deltas[name]
    return {"verdict": report.get("verdict"), "error": report.get("error"),
            "kernel": report.get("kernel"), "backend": report.get("backend"),
            "failed_checks": [c["name"] for c in checks if outcome_of(c) == FAIL],
            "checks": f"{sum(c['passed'] for c in checks)}/{len(checks)}",
            "outcomes": {c["name"]: outcome_of(c) for c in checks},
            "values": values, "counters": counters,
            "artifacts": (report.get("artifacts") or {}).get("dir")}


def _path(values: Any, path: str) -> Any:
    cur = values
    for part in path.split("."):
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list) and part.lstrip("-").isdigit() and -len(cur) <= int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
    return cur


def _error_cell(reason: str) -> dict[str, Any]:
    return {"verdict": "error", "error": " ".join(str(reason).split()), "values": {}, "counters": {},
            "failed_checks": [], "checks": ""}


# -- running ------------------------------------------------------------------------------------

def run_matrix(kernels: list[str], names: list[str], out: Path, backend: str = "auto",
               progress: Callable[[str], None] = lambda s: None,
               vm: Any = None) -> dict[str, Any]:
    """Run each scenario on each kernel; return the matrix (also written as matrix.json and
    matrix.md under *out*). *vm* stands in for lab.vm (tests)."""
    from scenarios import get

    from .runner import run_scenario

    kernels = list(dict.fromkeys(kernels or [HOST]))
    for n in names:
        get(n)                                                  # a bad name fails here, once
    out = Path(out)
    started = time.time()
    cells: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in names}
    releases: dict[str, str | None] = {}
    for kernel in kernels:
        if kernel == HOST:
            releases[kernel] = platform.release()
            for n in names:
                progress(f"{n} on {kernel} ({releases[kernel]}) ...")
                try:
                    report = run_scenario(n, backend=backend, artifacts=out / kernel / n,
                                          progress=lambda s: None)
                    cells[n][kernel] = cell_from_report(report)
                except NetemMissing as exc:              # this kernel cannot run it: say why
                    cells[n][kernel] = {**_error_cell(exc.why), "verdict": "skipped"}
                except LabError as exc:
                    cells[n][kernel] = _error_cell(exc)
                progress(f"{n} on {kernel}: {cells[n][kernel]['verdict']}")
            continue
        runner, why = vm, None
        if runner is None:
            try:
                import lab.vm as runner                          # noqa: PLC0415 - built alongside
            except Exception as exc:                             # noqa: BLE001 - missing or broken
                why = f"no VM runner: lab.vm cannot be imported ({exc.__class__.__name__}: {exc})"
        for n in names:
            if why:
                cells[n][kernel] = _error_cell(why)
                continue
            progress(f"{n} on {kernel} (VM) ...")
            cells[n][kernel] = _vm_cell(runner, kernel, n, out / kernel / n, progress)
            releases.setdefault(kernel, cells[n][kernel].get("kernel"))
            if cells[n][kernel].get("kernel"):
                releases[kernel] = cells[n][kernel]["kernel"]
            progress(f"{n} on {kernel}: {cells[n][kernel]['verdict']}"
                     + (f" - {cells[n][kernel]['error']}" if cells[n][kernel].get("error") else ""))
        releases.setdefault(kernel, None)
    matrix = {"kernels": kernels, "releases": releases, "scenarios": names, "cells": cells,
              "wall_s": round(time.time() - started, 3), "out": str(out)}
    matrix["rows"] = rows(matrix)
    matrix["differs"] = [f"{r['scenario']}: {r['what']}" for r in matrix["rows"] if r["differs"]]
    out.mkdir(parents=True, exist_ok=True)
    (out / "matrix.json").write_text(json.dumps(matrix, indent=2, default=str) + "\n")
    (out / "matrix.md").write_text(markdown(matrix))
    return matrix


def _vm_cell(vm: Any, kernel: str, name: str, artifacts: Path, progress) -> dict[str, Any]:
    artifacts = artifacts.resolve()       # shared with the guest at the same absolute path
    args = ["run", name, "--backend", "netns", "--artifacts", str(artifacts), "--json"]
    try:
        artifacts.mkdir(parents=True, exist_ok=True)
        code, output = vm.run(kernel, args, artifacts, progress)
    except KeyboardInterrupt:
        raise
    except Exception as exc:                                    # noqa: BLE001 - LabError or a bug: say it
        return _error_cell(f"{kernel}: {exc}")
    report = _find_report(artifacts, name, output)
    if report is None:
        last = next((ln for ln in reversed(str(output or "").splitlines()) if ln.strip()), "no output")
        return _error_cell(f"{kernel}: the run left no report.json (exit {code}): {last}")
    cell = cell_from_report(report)
    cell["exit_code"] = code
    return cell


def _find_report(artifacts: Path, name: str, output: str | None) -> dict[str, Any] | None:
    for path in sorted(artifacts.rglob("report.json")):
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if report.get("scenario") == name:
            return report
    text = str(output or "")                                     # `run --json` printed it
    start = text.find("{\n")
    if start >= 0:
        try:
            report = json.loads(text[start:text.rindex("}") + 1])
            if isinstance(report, dict) and report.get("scenario") == name:
                return report
        except ValueError:
            pass
    return None


# -- the table ----------------------------------------------------------------------------------

def rows(matrix: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten cells into rows: (scenario, what) x kernel -> text, and whether kernels differ."""
    out = []
    kernels = matrix["kernels"]
    for n in matrix["scenarios"]:
        cells = matrix["cells"][n]
        tol = {kv.label: kv for kv in KEY_VALUES.get(n, [])}

        def row(what: str, get, kv: KeyValue | None = None) -> None:
            raw = {k: get(cells.get(k) or {}) for k in kernels}
            ran = [k for k in kernels if (cells.get(k) or {}).get("verdict") in ("pass", "fail")]
            if what != "verdict" and all(raw[k] is None for k in kernels):
                return
            vals = [raw[k] for k in ran]
            differs = len(ran) > 1 and any(not _same(vals[0], v, kv) for v in vals[1:])
            out.append({"scenario": n, "what": what, "cells": {k: _fmt(raw[k]) for k in kernels},
                        "raw": raw, "differs": differs})

        row("verdict", lambda c: _verdict_text(c))
        for label in dict.fromkeys(lbl for c in cells.values() for lbl in c.get("values", {})):
            row(label, lambda c, lbl=label: (c.get("values") or {}).get(lbl), tol.get(label))
        counter_names = sorted({k for c in cells.values() for k in c.get("counters", {})})
        if counter_names:
            row("counters", lambda c: ", ".join(f"{k} +{v}" for k, v in (c.get("counters") or {}).items()
                                                 if k in counter_names) or None
                if c.get("verdict") in ("pass", "fail") else None)
            if n in RANDOM_COUNTS:       # counts of random losses: only which counters moved tells
                ran = [k for k in kernels if (cells.get(k) or {}).get("verdict") in ("pass", "fail")]
                moved = [sorted((cells[k].get("counters") or {})) for k in ran]
                out[-1]["differs"] = len(ran) > 1 and any(m != moved[0] for m in moved[1:])
    return out


def _verdict_text(c: dict[str, Any]) -> str | None:
    if not c:
        return None
    v = c.get("verdict")
    if v in ("error", "skipped"):
        return f"{v}: {c.get('error')}"
    text = f"{v} {c.get('checks', '')}".strip()
    if c.get("failed_checks"):
        text += f" (failed: {', '.join(c['failed_checks'])})"
    for outcome, word in ((NOT_APPLICABLE, "n/a"), (INCONCLUSIVE, "inconclusive")):
        names = [n for n, o in (c.get("outcomes") or {}).items() if o == outcome]
        if names:
            text += f" ({word}: {', '.join(names)})"
    if c.get("error"):
        text += f" ({c['error']})"
    return text


def _same(a: Any, b: Any, kv: KeyValue | None) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if kv is None:
            return a == b
        return math.isclose(a, b, rel_tol=kv.rel_tol, abs_tol=kv.abs_tol)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y, kv) for x, y in zip(a, b))
    return a == b


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:.6g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items())
    return str(v)


def _header(matrix: dict[str, Any], kernel: str) -> str:
    rel = matrix.get("releases", {}).get(kernel)
    return f"{kernel} ({rel})" if rel and rel != kernel else kernel


def markdown(matrix: dict[str, Any]) -> str:
    kernels = matrix["kernels"]
    lines = ["# twlab matrix", "",
             f"Scenarios {', '.join(matrix['scenarios'])} on {', '.join(_header(matrix, k) for k in kernels)}. "
             "**differs** marks a row whose observations are not the same on every kernel that ran it "
             "(within each value's tolerance); `-` is not observed (or a counter that did not move).", "",
             "| scenario | observed | " + " | ".join(_header(matrix, k) for k in kernels) + " | differs |",
             "|---|---|" + "---|" * len(kernels) + "---|"]

    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    for r in matrix["rows"]:
        cells = [esc(r["cells"][k]) for k in kernels]
        if r["differs"]:
            cells = [f"**{c}**" for c in cells]
        lines.append(f"| {r['scenario']} | {esc(r['what'])} | " + " | ".join(cells)
                     + f" | {'**differs**' if r['differs'] else ''} |")
    return "\n".join(lines) + "\n"


def show(matrix: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="twlab matrix: scenario x kernel", show_lines=False)
    table.add_column("scenario")
    table.add_column("observed")
    for k in matrix["kernels"]:
        table.add_column(_header(matrix, k), overflow="fold")
    table.add_column("differs")
    last = None
    for r in matrix["rows"]:
        if last is not None and r["scenario"] != last:
            table.add_section()
        colour = {True: "bold yellow"}.get(r["differs"])
        cells = []
        for k in matrix["kernels"]:
            text = r["cells"][k]
            if r["what"] == "verdict":
                style = "green" if text.startswith("pass") else "red" if text.startswith("fail") else "yellow"
                text = f"[{style}]{_esc(text)}[/]"
            else:
                text = _esc(text)
            cells.append(f"[{colour}]{text}[/]" if colour else text)
        table.add_row(r["scenario"] if r["scenario"] != last else "", _esc(r["what"]), *cells,
                      "[bold yellow]differs[/]" if r["differs"] else "")
        last = r["scenario"]
    Console().print(table)


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def parse_kernels(values: list[str] | None) -> list[str]:
    from .vm import KERNELS

    kernels = [k.strip() for v in (values or []) for k in v.split(",") if k.strip()]
    for k in kernels:
        if k != HOST and k not in KERNELS:
            raise UsageError(f"--kernel {k!r}: unknown kernel; choose {HOST} (this machine's) or "
                             + ", ".join(KERNELS) + " (booted under qemu)")
    return kernels or [HOST]
