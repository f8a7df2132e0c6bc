"""The lab sheet "two-stacks" (two TCP implementations, two choices): lost-ack on Linux and on
gVisor's netstack side by side, and its instructor's key filled from that matrix.

It is the one sheet that is not a scenario's: its numbers come from three runs of lost-ack (and
of tw-assassination, for the RST into TIME-WAIT), the columns of

    invoke matrix --backend netns --stack linux --stack client=gvisor --stack server=gvisor \\
        --scenario lost-ack --scenario tw-assassination --out DIR

and `invoke sheet two-stacks --key DIR` reads DIR/matrix.json: each column's verdict, its checks
not applicable, its counters and lost-ack's key values (lab.matrix). Which column shows what:
Linux's TIME-WAIT timer from ``linux`` (sock_diag), Linux's TIME-WAIT on the wire from
``server=gvisor`` (the client is Linux there, and the router's prober runs whenever a host is on
gVisor), gVisor's from ``client=gvisor``; Linux's FINs from ``linux``, gVisor's from
``server=gvisor``; what a RST does to Linux's TIME-WAIT from ``linux``, to gVisor's from
``client=gvisor``. Table 5 takes one key value per scenario where the catalog found the two
choosing differently (CATALOG), from the column whose host makes that choice. A cell a column does
not give is shown as such, with the reason (a matrix run without tw-assassination, or without the
rest of the catalog, leaves Table 4's or Table 5's cells so).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import UsageError
from .sheetkey import Cell, render_filled

__all__ = ["SHEET", "COLUMNS", "stacks_cells", "stacks_key"]

SHEET = "two-stacks"
SCENARIO, TWA = "lost-ack", "tw-assassination"
COLUMNS = {"linux": "linux", "cgv": "client=gvisor", "sgv": "server=gvisor"}   # cell prefix -> --stack
MATRIX = ("invoke matrix --backend netns --stack linux --stack client=gvisor --stack server=gvisor "
          "--scenario lost-ack --scenario tw-assassination --out DIR")
TW_ARMED, TW_WIRE = "TIME-WAIT armed (ms)", "TIME-WAIT on the wire, gone by (s after the last ACK)"
FINS, GAPS = "server FINs (1 + retransmissions)", "FIN intervals (s)"
TWA_AFTER, TWA_KILLED, TWA_RFC1337 = "TIME-WAIT after the RST", "killed after the RST (ms)", "tcp_rfc1337"


def stacks_key(where: Path | str, lang: str = "en") -> str:
    """`invoke sheet two-stacks --key DIR`: the sheet filled from DIR/matrix.json."""
    matrix = _load(Path(where))
    cells, columns = stacks_cells(matrix)
    first = matrix["cells"][SCENARIO][next(iter(columns.values()))]
    kernel, backend = first.get("kernel", "-"), first.get("backend", "-")
    about = (f"{SCENARIO} x {', '.join(COLUMNS.values())}, kernel {kernel}, backend {backend}" if lang == "en" else
             f"{SCENARIO} x {'、'.join(COLUMNS.values())}，内核 {kernel}，后端 {backend}")
    return render_filled(SHEET, cells, about, "", lang, where=str(where))


def _load(where: Path) -> dict[str, Any]:
    """DIR/matrix.json with lost-ack run in the three columns; else one line saying what to run."""
    path = where / "matrix.json"
    try:
        matrix = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path} ({exc.__class__.__name__}): give the --out directory of `{MATRIX}`") \
            from None
    missing = [c for c in COLUMNS.values() if _column(matrix, c) is None]
    if missing:
        raise UsageError(f"{path} has no lost-ack run in the column(s) {', '.join(missing)}: "
                         f"give the --out directory of `{MATRIX}`")
    return matrix


def _column(matrix: dict[str, Any], stack: str) -> str | None:
    """The matrix column for --stack *stack* (``host/client=gvisor`` or just ``client=gvisor``)."""
    cells = (matrix.get("cells") or {}).get(SCENARIO) or {}
    return next((c for c in cells if c == stack or c.endswith("/" + stack)), None)


def stacks_cells(matrix: dict[str, Any]) -> tuple[dict[str, Cell], dict[str, str]]:
    """Every cell of the sheet from *matrix*, and the matrix column of each prefix."""
    columns = {p: _column(matrix, s) or s for p, s in COLUMNS.items()}
    runs = {p: matrix["cells"][SCENARIO].get(c) or {} for p, c in columns.items()}
    twa = {p: ((matrix.get("cells") or {}).get(TWA) or {}).get(c) or {} for p, c in columns.items()}
    out: dict[str, Cell] = {}

    def value(prefix: str, label: str, what: str, scenario: str = SCENARIO) -> Cell:
        v = ((runs if scenario == SCENARIO else twa)[prefix].get("values") or {}).get(label)
        where = f"matrix.json, {scenario}, {columns[prefix]}: {label}"
        return Cell(v, where) if v is not None else Cell(None, f"{where}: not in this run ({what})")

    out["linux_tw_armed_ms"] = value("linux", TW_ARMED, "sock_diag saw no TIME-WAIT")
    out["linux_tw_wire_s"] = value("sgv", TW_WIRE, "the prober measured nothing")
    out["gvisor_tw_wire_s"] = value("cgv", TW_WIRE, "the prober measured nothing")
    for stack, prefix in (("linux", "linux"), ("gvisor", "sgv")):
        out[f"{stack}_fin_count"] = value(prefix, FINS, "no FIN in server.pcap")
        out[f"{stack}_fin_gaps"] = value(prefix, GAPS, "fewer than two FINs")
    out["linux_twa_rfc1337"] = value("linux", TWA_RFC1337, "tw-assassination not run", TWA)
    for stack, prefix in (("linux", "linux"), ("gvisor", "cgv")):
        out[f"{stack}_twa_after"] = value(prefix, TWA_AFTER, "tw-assassination not run", TWA)
        out[f"{stack}_twa_killed_ms"] = value(prefix, TWA_KILLED, "not killed, or not run", TWA)
    out.update(_catalog_cells(matrix, columns))
    for prefix, run in runs.items():
        where = f"matrix.json, {columns[prefix]}"
        outcomes = run.get("outcomes") or {}
        na = sorted(n for n, o in outcomes.items() if o == "n/a")
        out[f"{prefix}_verdict"] = Cell(f"{run.get('verdict', '-')} ({run.get('checks', '-')})",
                                        f"{where}: verdict, checks passed")
        out[f"{prefix}_na"] = Cell(", ".join(na) or "none", f"{where}: the checks not applicable")
        counters = run.get("counters") or {}
        out[f"{prefix}_counters"] = Cell(", ".join(f"{k} +{v}" for k, v in sorted(counters.items())) or "none",
                                         f"{where}: counters that moved (Linux hosts only: gVisor's are its own)")
    return out, columns


# Table 5: where the whole catalog found the two implementations choosing differently - (cell,
# scenario, key value label, the column that shows Linux, the column that shows gVisor). A matrix
# run without that scenario leaves its row's cells empty, saying so.
CATALOG = (
    ("fw2_s", "time-wait-duration", "orphan FIN-WAIT-2 (s)", "linux", "cgv"),
    ("tw_end", "tw-buckets", "TIME-WAIT sockets at the end", "linux", None),
    ("tw_kept", "tw-buckets", "TIME-WAITs held (probed)", None, "cgv"),
    ("b_same", "five-tuple", "connect onto TIME-WAIT, port bound", "linux", "cgv"),
    ("syn_behind", "tw-reopen", "SYN behind accepted", "linux", "sgv"),
    ("old_bytes", "wandering-duplicates", "old bytes delivered", "linux", "sgv"),
)


def _catalog_cells(matrix: dict[str, Any], columns: dict[str, str]) -> dict[str, Cell]:
    """Table 5's cells: ``linux_<cell>`` and ``gvisor_<cell>`` from the columns that show each."""
    out: dict[str, Cell] = {}
    for cell, scenario, label, linux, gvisor in CATALOG:
        for stack, prefix in (("linux", linux), ("gvisor", gvisor)):
            if prefix is None:
                continue
            run = ((matrix.get("cells") or {}).get(scenario) or {}).get(columns[prefix]) or {}
            v = (run.get("values") or {}).get(label)
            where = f"matrix.json, {scenario}, {columns[prefix]}: {label}"
            out[f"{stack}_{cell}"] = Cell(v, where) if v is not None else Cell(
                None, f"{where}: not in this run (run the whole catalog: drop --scenario)")
    return out

