"""`invoke matrix`: the same scenarios on several kernels, side by side.

    m = run_matrix(["host", "debian-12"], ["lost-ack", "time-wait-duration"], out=Path("matrix"))
    print(markdown(m))

"host" runs on this machine's kernel (lab.runner.run_scenario). Any other kernel is run by
``lab.vm.run(kernel, twlab_args, artifacts, progress, docker=...) -> (exit_code, stdout)``, which
boots that kernel and runs ``invoke run SCENARIO --backend netns|docker --artifacts ARTIFACTS
--json`` inside it (ARTIFACTS is shared with the guest at the same absolute path), leaving
report.json there; lab.vm is imported lazily, and when it is missing or fails that kernel's cells
say why (never a made-up result). Backends are a second axis: with more than one, each kernel
has a column per backend, named KERNEL/BACKEND ("auto" means netns inside a VM). Address families
are rows: with ``--family both`` each scenario has a row for IPv4 (its name) and one for IPv6
(SCENARIO/v6; lab.family), the guest's runs getting ``--family 6``. A cell holds
the verdict and the key observed values of the scenario (each scenario's key_values: the
numbers its checks used, from report.json's checks[].values) and the TIME-WAIT counters that
moved; a row whose values differ between columns is marked.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .artifacts import ensure_dir, write_text
from .errors import UsageError
from .family import check_family, split_label
from .family import label as row_name
from .matrix_view import _columns, markdown, show
from .saved import index_quietly, pages_for
from .scenario import KeyValue
from .verdict import FAIL, INCONCLUSIVE, NOT_APPLICABLE, outcome_of

__all__ = ["COUNTERS", "KeyValue", "run_matrix", "columns", "parse_backends",
           "cell_from_report", "rows", "markdown", "show"]

HOST = "host"


# the TIME-WAIT story in nstat (reference R-COUNTERS); a cell lists those that moved, per host
COUNTERS = ("TcpExtTW", "TcpExtTWKilled", "TcpExtTWRecycled", "TcpExtTCPTimeWaitOverflow",
            "TcpExtPAWSTimewait", "TcpExtPAWSEstab", "TcpExtTCPACKSkippedTimeWait",
            "TcpExtTCPLossProbes", "TcpExtTCPAbortOnTimeout", "TcpRetransSegs", "TcpOutRsts")


# -- one cell -----------------------------------------------------------------------------------

def _scenario_of(name: str):
    """The scenario a cell is of (what it declares the matrix shows of it), by its name or its row's
    (SCENARIO/v6); an unknown name (a report from another version) shows its verdict only."""
    from scenarios import find

    from .scenario import Scenario

    name = split_label(name)[0]
    return find(name) or Scenario(name=name, intent="", run=lambda lab: {}, checks=())


def cell_from_report(report: dict[str, Any]) -> dict[str, Any]:
    """What the matrix shows of one report.json."""
    import fnmatch

    checks = report.get("checks") or []
    values: dict[str, Any] = {}
    for kv in _scenario_of(report.get("scenario", "")).key_values:
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

def columns(kernels: list[str], backends: list[str]) -> list[tuple[str, str, str]]:
    """(column, kernel, backend) for each kernel x backend: a column is named for its kernel alone
    when one backend was asked for, else KERNEL/BACKEND."""
    return [(k if len(backends) == 1 else f"{k}/{b}", k, b) for k in kernels for b in backends]


def parse_stack_columns(values: list[str] | None) -> list[tuple[str, dict[str, str]]]:
    """--stack of `invoke matrix`, repeatable: ``linux`` (both ends on Linux, the default),
    ``gvisor`` (both ends on gVisor's netstack) or ``HOST=STACK[;HOST=STACK]`` (e.g.
    ``client=gvisor``): (column label, the run's stacks) each."""
    from .gvisor import STACKS, parse_stacks

    out = []
    for text in dict.fromkeys(v.strip() for v in (values or []) if v.strip()):
        if text in STACKS:
            out.append((text, {} if text == "linux" else {"client": text, "server": text}))
        else:
            out.append((text, parse_stacks(text.split(";"))))
    return out or [("linux", {})]


def run_matrix(kernels: list[str], names: list[str], out: Path, backend: str | list[str] = "auto",
               progress: Callable[[str], None] = lambda s: None, vm: Any = None,
               families: tuple[int, ...] = (4,), shard: tuple[int, int] | None = None,
               accel: str = "auto", stacks: list[str] | None = None) -> dict[str, Any]:
    """Run each scenario on each kernel, with each backend, over each address family (a row per
    scenario and family) - a VM kernel's whole column in one boot (lab.vm.column) - with each TCP
    stack (--stack: a column per stack, KERNEL/STACK, when more than one is asked for; lab.gvisor),
    or, with *shard* (I, N), only shard I of N of those cells (lab.matrix_shard); return the matrix
    (also written as matrix.json and matrix.md under *out*). *vm* stands in for lab.vm (tests)."""
    from scenarios import get

    from .artifacts import check_dir
    from .matrix_shard import cell_key, plan, select

    kernels = list(dict.fromkeys(kernels or [HOST]))
    backends = parse_backends([backend] if isinstance(backend, str) else backend)
    families = tuple(check_family(f) for f in families)
    for n in names:
        get(n)                                                  # a bad name fails here, once
    out = check_dir(Path(out), "--out")
    started = time.time()
    stack_cols = parse_stack_columns(stacks)
    several = len(stack_cols) > 1
    cols, stack_of, stack_label = [], {}, {}
    for c, k, be in columns(kernels, backends):
        for label, st in stack_cols:
            col = f"{c}/{label}" if several else c
            cols.append((col, k, be))
            stack_of[col], stack_label[col] = st, label
    rows_of = [(row_name(n, f), n, f) for n in names for f in families]
    cells: dict[str, dict[str, dict[str, Any]]] = {row: {} for row, _, _ in rows_of}
    releases: dict[str, str | None] = {}
    todo = select(plan(cols, names), shard)
    for col, kernel, be in cols:
        mine = [n for c, _, _, n in todo if c == col]
        if mine:
            where = out / (_dirname(kernel, be, len(backends) > 1) + (f"/{stack_label[col]}" if several else ""))
            got, releases[col] = _column(kernel, be, mine, families, where, progress, col, vm, accel,
                                         stack_of[col])
            for row, cell in got.items():
                cells[row][col] = cell
        releases.setdefault(col, None)
    matrix = {"kernels": kernels, "backends": backends, "columns": [c for c, _, _ in cols], "stacks": stack_of,
              "releases": releases, "scenarios": [row for row, _, _ in rows_of], "families": list(families),
              "cells": cells, "wall_s": round(time.time() - started, 3), "out": str(out)}
    if shard:
        matrix["shard"] = {"index": shard[0], "of": shard[1],
                           "cells": [cell_key(k, b, n, f) for _, k, b, n in todo for f in families]}
    return finish(matrix, out, progress)


def finish(matrix: dict[str, Any], out: Path, progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """The rows and what differs, written as matrix.json and matrix.md under *out*, with the runs'
    pages and the index."""
    matrix["rows"] = rows(matrix)
    matrix["differs"] = [f"{r['scenario']}: {r['what']}" for r in matrix["rows"] if r["differs"]]
    ensure_dir(out)
    write_text(out / "matrix.json", json.dumps(matrix, indent=2, default=str) + "\n")
    write_text(out / "matrix.md", markdown(matrix))
    pages_for(out, progress)                    # runs inside a VM leave their report.html to this side
    index_quietly(out, "matrix", matrix=matrix, progress=progress)
    return matrix


def exit_code(matrix: dict[str, Any]) -> int:
    """`invoke matrix`'s exit code: lab.verdict's for the batch of every cell; 0 with no cell."""
    from .verdict import batch_exit_code

    cells = [cell["verdict"] for per in matrix["cells"].values() for cell in per.values()]
    return batch_exit_code(cells) if cells else 0


def _dirname(kernel: str, backend: str, several: bool) -> str:
    """A column's artifacts directory: a kernel given by path or as debian:VERSION by its cache key."""
    if kernel == HOST:                  # (lab.vm's kernel code is not needed for this machine's column)
        return kernel + (f"/{backend}" if several else "")
    from .vm import label

    return label(kernel) + (f"/{backend}" if several else "")


def _column(kernel: str, be: str, names: list[str], families: tuple[int, ...], out: Path, progress, col: str,
            vm: Any, accel: str, stacks: dict[str, str]) -> tuple[dict[str, dict[str, Any]], str | None]:
    """One column's cells, keyed by row (SCENARIO or SCENARIO/v6): this machine's runs (with
    *stacks*, each host's TCP stack), or one boot of a VM kernel for all of them."""
    if kernel == HOST:
        return _host_cells(names, be, out, progress, col, families, stacks), platform.release()
    rows_of = [row_name(n, f) for n in names for f in families]
    why = None
    if vm is None:
        try:
            import lab.vm as vm  # noqa: PLC0415 - built alongside
        except Exception as exc:                                 # noqa: BLE001 - missing or broken
            why = f"no VM runner: lab.vm cannot be imported ({exc.__class__.__name__}: {exc})"
    if why:
        return {r: _error_cell(why) for r in rows_of}, None
    from .vm.column import column_in_vm

    progress(f"{', '.join(rows_of)} on {col} (one VM boot) ...")
    cells, release = column_in_vm(vm, kernel, be, names, out, progress, _error_cell, accel, families, stacks)
    for row, cell in cells.items():
        progress(f"{row} on {col}: {cell['verdict']}" + (f" - {cell['error']}" if cell.get("error") else ""))
    return cells, release


def _host_cells(names: list[str], backend: str, out: Path, progress, col: str,
                families: tuple[int, ...] = (4,), stacks: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """This machine's column, a cell per scenario and family (keyed SCENARIO or SCENARIO/v6): the
    scenarios through lab.pipeline, one lab at a time (the numbers compared across kernels stay
    undisturbed by company)."""
    from .pipeline import run_batches
    from .runner import jobs_for

    jobs = jobs_for(names, out, backend, options={"stacks": stacks} if stacks else None, families=families)
    results = run_batches(jobs, 1, progress, label=lambda r: f"{r.name} on {col}:")
    cells = {}
    for job, res in zip(jobs, results):
        if res.verdict == "skipped":                  # this kernel cannot run it: say why
            cells[job.name] = {**_error_cell((res.skip or {}).get("why", res.reason)), "verdict": "skipped"}
            continue
        report = _find_report(Path(job.artifacts), job.scenario, None, job.family)
        cells[job.name] = cell_from_report(report) if report else _error_cell(res.error or "no report.json")
    return cells


def _find_report(artifacts: Path, name: str, output: str | None, family: int = 4) -> dict[str, Any] | None:
    """The report.json of scenario *name* over *family* under *artifacts* (or printed in *output*)."""
    def ours(report: Any) -> bool:
        return isinstance(report, dict) and report.get("scenario") == name and (report.get("family") or 4) == family

    for path in sorted(artifacts.rglob("report.json")):
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if ours(report):
            return report
    text = str(output or "")                                     # `run --json` printed it
    start = text.find("{\n")
    if start >= 0:
        try:
            report = json.loads(text[start:text.rindex("}") + 1])
            if ours(report):
                return report
        except ValueError:
            pass
    return None


# -- the table ----------------------------------------------------------------------------------

def rows(matrix: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten cells into rows: (scenario, what) x kernel -> text, and whether kernels differ."""
    out = []
    for n in matrix["scenarios"]:
        out += _scenario_rows(n, matrix["cells"][n], _columns(matrix))
    return out


def _scenario_rows(n: str, cells: dict[str, dict], kernels: list[str]) -> list[dict[str, Any]]:
    """One scenario's rows: its verdict, its key values, the counters that moved."""
    out: list[dict[str, Any]] = []
    tol = {kv.label: kv for kv in _scenario_of(n).key_values}
    ran = [k for k in kernels if (cells.get(k) or {}).get("verdict") in ("pass", "fail")]

    def row(what: str, get, kv: KeyValue | None = None) -> None:
        raw = {k: get(cells.get(k) or {}) for k in kernels}
        if what != "verdict" and all(raw[k] is None for k in kernels):
            return
        vals = [raw[k] for k in ran]
        differs = len(ran) > 1 and any(not _same(vals[0], v, kv) for v in vals[1:])
        out.append({"scenario": n, "what": what, "cells": {k: _fmt(raw[k]) for k in kernels},
                    "raw": raw, "differs": differs})

    row("verdict", _verdict_text)
    for label in dict.fromkeys(lbl for c in cells.values() for lbl in c.get("values", {})):
        row(label, lambda c, lbl=label: (c.get("values") or {}).get(lbl), tol.get(label))
    moved = sorted({k for c in cells.values() for k in c.get("counters", {})})
    if moved:
        row("counters", lambda c: ", ".join(f"{k} +{v}" for k, v in (c.get("counters") or {}).items()
                                             if k in moved) or None
            if c.get("verdict") in ("pass", "fail") else None)
        if _scenario_of(n).random_counts:   # counts of random losses: only which counters moved tells
            which = [sorted(cells[k].get("counters") or {}) for k in ran]
            out[-1]["differs"] = len(ran) > 1 and any(m != which[0] for m in which[1:])
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


def parse_kernels(values: list[str] | None) -> list[str]:
    """--kernel, repeatable or comma-separated: host, or any kernel lab.vm takes (a preset,
    debian:VERSION, a path); anything else is refused before any run."""
    from .errors import LabError
    from .vm import kernel_spec

    kernels = [k.strip() for v in (values or []) for k in v.split(",") if k.strip()]
    for k in kernels:
        if k == HOST:
            continue
        try:
            kernel_spec(k)
        except LabError as exc:
            raise UsageError(f"--kernel {k!r}: {exc}; or {HOST} (this machine's)") from None
    return kernels or [HOST]


def parse_backends(values: list[str] | None) -> list[str]:
    """--backend, repeatable or comma-separated: auto, docker, netns (default: auto)."""
    backends = list(dict.fromkeys(b.strip() for v in (values or []) for b in v.split(",") if b.strip()))
    for b in backends:
        if b not in ("auto", "docker", "netns"):
            raise UsageError(f"--backend {b!r}: choose auto, docker or netns (repeat it for a backend axis)")
    return backends or ["auto"]
