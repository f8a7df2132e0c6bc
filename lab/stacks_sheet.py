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
``client=gvisor``. A cell a column does not give is shown as such, with the reason (a matrix run
without tw-assassination leaves Table 4's cells so).
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
