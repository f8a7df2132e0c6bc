"""The report's tables: the checks with their rules linked, the sysctls in force, the captures."""

from __future__ import annotations

from ..verdict import outcome_of
from .cite import linked
from .svg import el, esc

__all__ = ["checks_table", "sysctls_table", "files_table"]

_OUTCOME_CLASS = {"pass": "pass", "fail": "fail", "n/a": "na", "inconclusive": "inconclusive"}


def checks_table(checks: list[dict]) -> str:
    """One row per check: outcome, name, expected, observed, the rule (citations as links)."""
    if not checks:
        return el("p", "No check was judged in this run.")
    head = el("tr", "".join(el("th", h) for h in ("outcome", "check", "expected", "observed", "rule")))
    rows = []
    for c in checks:
        outcome = outcome_of(c)
        rows.append(el("tr", el("td", esc(outcome), class_=f"outcome {_OUTCOME_CLASS.get(outcome, '')}")
                       + el("td", el("code", esc(c["name"])))
                       + el("td", esc(c.get("expected", ""))) + el("td", esc(c.get("observed", "")))
                       + el("td", linked(c.get("citation", ""))),
                       id=f"check-{c['name']}", data_outcome=outcome))
    return el("table", el("thead", head) + el("tbody", "".join(rows)), class_="checks")


def sysctls_table(report: dict) -> str:
    """The sysctls in force, read back from each host: one row per key, a column per host; the
    keys the run set (the scenario's own, --sysctl, a profile) marked."""
    hosts = {h: v.get("sysctls", {}) for h, v in (report.get("hosts") or {}).items()}
    if not hosts and report.get("sysctls"):                 # a recorded evidence file
        hosts = report["sysctls"]
    if not hosts:
        return el("p", "This record holds no sysctls.")
    names = list(hosts)
    keys = sorted({k for v in hosts.values() for k in v})
    asked = {s.split("=")[0].split(":", 1)[-1] for s in report.get("sysctls_requested") or []}
    head = el("tr", el("th", "key") + "".join(el("th", esc(h)) for h in names))
    rows = [el("tr", el("td", el("code", esc(k))) + "".join(el("td", esc(hosts[h].get(k, "-")), class_="num")
                                                             for h in names),
               class_="requested" if k in asked else None) for k in keys]
    note = el("p", "Highlighted: the keys this run set ("
              + esc(", ".join(report.get("sysctls_requested") or [])) + ").") \
        if asked else ""
    return note + el("table", el("thead", head) + el("tbody", "".join(rows)), class_="sysctls")


def files_table(report: dict, present: set[str]) -> str:
    """The run's captures, linked (those in the directory), with where each was taken: for the
    router, which interface faces which side (report.json's capture_points)."""
    points = report.get("capture_points") or {}
    counts = report.get("captures") or {}
    names = sorted(set(points) | {p[:-5] for p in present if p.endswith(".pcap")} | set(counts))
    if not names:
        return el("p", "No capture file is kept with this record (a recorded evidence file: the packets are in it, "
                  "decoded).")
    head = el("tr", "".join(el("th", h) for h in ("file", "host", "interface", "faces", "packets",
                                                  "dropped by the kernel")))
    rows = []
    for name in names:
        file = (points.get(name) or {}).get("file", f"{name}.pcap")
        p, c = points.get(name) or {}, counts.get(name) or {}
        link = el("a", esc(file), href=file) if file in present else esc(file) + " (not here)"
        where = f"{p['interface']} (index {p['ifindex']}, {p['network']} {p['address']})" if p else \
            ("NFLOG group 1: what the faults dropped, held or copied" if name == "faults" else "-")
        host = p.get("host", "router" if name == "faults" else name)
        rows.append(el("tr", el("td", link) + el("td", esc(host)) + el("td", esc(where))
                       + el("td", esc(", ".join(p.get("faces", [])) or "-"))
                       + el("td", esc(c.get("captured", "-")), class_="num")
                       + el("td", esc(c.get("dropped", "-")), class_="num")))
    return el("table", el("thead", head) + el("tbody", "".join(rows)), class_="files")
