"""One run's page: the ladder, the timers, the checks, the sysctls, the captures, the rules cited.

    html = render(report, present={"client.pcap", ...})      # a whole, self-contained document
"""

from __future__ import annotations

import datetime as _dt
import re

from ..ladder import Row, ladder_rows
from . import plots
from .cite import KERNEL_VERSION, markdown, reference_section
from .ladder import ladder_svg
from .lanes import lanes
from .sections import checks_table, files_table, sysctls_table
from .style import CSS
from .svg import el, esc

__all__ = ["render"]

_STATES = ("ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "CLOSE_WAIT", "LAST_ACK", "CLOSING", "TIME_WAIT", "CLOSE")


def render(report: dict, present: set[str]) -> str:
    """The page of *report* (report.json's content); *present*: the files beside it, to link."""
    from ..report import focus, scenario_of, summary_lines

    port, why = focus(report)
    rows = ladder_rows(report, port=port)
    sc = scenario_of(report)
    parts = [_header(report, present), _scenario_lines(summary_lines(report))]
    parts.append(_ladder_section(report, rows, port, why, present))
    parts.append(_timer_section(report, rows))
    dist = sc.distribution(report) if sc is not None and sc.distribution is not None else None
    if dist:
        parts.append(_distribution_section(dist))
    checks = report.get("checks") or []
    parts.append(el("section", el("h2", "Checks") + checks_table(checks), id="checks"))
    parts.append(el("section", el("h2", "Sysctls in force") + sysctls_table(report), id="sysctls"))
    parts.append(el("section", el("h2", "Captures") + files_table(report, present), id="captures"))
    parts.append(_references(" ".join(c.get("citation", "") for c in checks)))
    parts.append(el("footer", esc(f"Written by twlab from report.json and the captures, "
                                  f"{_dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}. Kernel sources are "
                                  f"linked at Linux {KERNEL_VERSION}, the version docs/reference.md was read at; "
                                  "the page fetches nothing.")))
    title = f"twlab {report.get('scenario', '')}: {str(report.get('verdict', '')).upper()}"
    return ("<!DOCTYPE html>\n" + el("html", el("head", '<meta charset="utf-8">'
                                             + '<meta name="viewport" content="width=device-width, initial-scale=1">'
                                             + el("title", esc(title)) + el("style", CSS))
                                     + el("body", "".join(parts)), lang="en") + "\n")


def _header(report: dict, present: set[str]) -> str:
    verdict = str(report.get("verdict", ""))
    hz = report.get("kernel_hz") or report.get("hz")
    facts = {"backend": report.get("backend"), "kernel": f"{report.get('kernel')} (HZ={hz})",
             "lab": report.get("lab_id"), "started": _when(report.get("started")),
             "took": f"{report['duration_s']} s" if report.get("duration_s") is not None else None,
             "hosts": ", ".join(f"{h} {next(iter(v.get('addresses', {}).values()), '')}"
                                for h, v in (report.get("hosts") or {}).items()),
             "link": ", ".join(report.get("shaping") or []) or _netem(report),
             "sysctls set": ", ".join(report.get("sysctls_requested") or []) or None,
             "options": ", ".join(k for k, v in (report.get("options") or {}).items() if v) or None}
    dl = el("dl", "".join(el("dt", esc(k)) + el("dd", esc(v)) for k, v in facts.items() if v), class_="facts")
    warns = [f"tcpdump in {h} dropped {c['dropped']} packets: its pcap is incomplete, and a segment missing "
             "from it may not have been lost" for h, c in (report.get("captures") or {}).items() if c.get("dropped")]
    warns += [f"the lab's observation broke: {p.get('text')}"
              for p in (report.get("observation") or {}).get("problems", [])]
    warns += [f"error: {report['error']}"] if report.get("error") else []
    warns += [report["source_note"]] if report.get("source_note") else []
    toc = el("nav", " ".join(el("a", t, href=f"#{i}") for i, t in (
        ("ladder", "ladder"), ("timers", "timers"), ("checks", "checks"), ("sysctls", "sysctls"),
        ("captures", "captures"), ("reference", "rules cited"))) + " " + el("a", "report.json", href="report.json")
        if "report.json" in present else "", class_="toc")
    return el("header", el("h1", esc(f"{report.get('scenario', '?')} ") + el("span", esc(verdict.upper() or "?"),
                                                                             class_=f"verdict {verdict}"))
              + el("p", esc(report.get("intent", "")), class_="intent") + dl
              + "".join(el("p", esc(w), class_="warn") for w in warns) + toc)


def _netem(report: dict) -> str | None:
    netem = report.get("netem") or {}
    return None if not netem or netem.get("available") else f"unshaped ({netem.get('reason')})"


def _when(t) -> str | None:
    return None if not t else f"{_dt.datetime.fromtimestamp(t).astimezone():%Y-%m-%d %H:%M:%S %Z}"


def _scenario_lines(lines: list[str]) -> str:
    text = "\n".join(ln for ln in lines if ln.strip())
    return el("section", el("h2", "In numbers") + el("pre", esc(text)), id="summary") if text else ""


def _ladder_section(report: dict, rows: list[Row], port, why, present: set[str]) -> str:
    if not any(r.kind == "segment" for r in rows):
        return el("section", el("h2", "Ladder") + el("p", "No packets were captured between client and server."),
                  id="ladder")
    pcaps = {h: f"{h}.pcap" for h in ("client", "server")}
    focus = el("p", esc(f"One connection of many: the client's port {port}" + (f", {why}" if why else "") + ".")) \
        if port is not None else ""
    legend = el("ul", "".join(el("li", esc(t)) for t in (
        "Time runs down. Thick axis: bursts, at one fine scale; dotted: quiet stretches, shorter, their length "
        "beside; zigzag: idle stretches over 5 s, cut.",
        "Arrows: each segment from its sender's capture to where its receiver's capture has it.",
        "✕ lost (dashed, ends at the router); ? the receiver's capture had ended; a bend through the router: held "
        "there and released; ○ on the router line: copied there; dashed magenta from the router: replayed.",
        "Lanes beside each end: the socket's states as sock_diag saw them; a hatched stretch is the interval in "
        "which a change is known to lie (between the sample that had not seen it and the one that did); a lane "
        "starts where the socket was first found. Hover an arrow or a lane for its fields.")), class_="legend")
    swatches = " ".join(el("span", f'<svg width="12" height="12" aria-hidden="true"><rect width="12" height="12" '
                                   f'class="st-{s}"/></svg> {s}') for s in _STATES)
    fig = el("figure", ladder_svg(rows, "client", "server", pcaps)
             + el("figcaption", legend + el("p", swatches, class_="swatches")))
    return el("section", el("h2", "Ladder") + focus + fig, id="ladder")


def _timer_section(report: dict, rows: list[Row]) -> str:
    t0 = next((r.segment["t"] - r.t for r in rows if r.kind == "segment" and r.host != "router"), None)
    if t0 is None:
        return ""
    keys = {h: {lane.socket for lane in lanes(rows, h)} for h in ("client", "server")}
    figs = []
    for fn, ident in ((plots.timer_plot, "timer-plot"), (plots.backoff_plot, "backoff-plot")):
        got = fn(report, keys, t0, rows, ident)
        if got:
            svg, alt = got
            figs.append(el("figure", svg + el("figcaption", esc(alt))))
    body = "".join(figs) or el("p", "No TIME-WAIT timer was sampled and no FIN was sent twice in this run.")
    return el("section", el("h2", "Timers") + body, id="timers")


def _distribution_section(dist: dict) -> str:
    got = plots.distribution_plot(dist, "distribution-plot")
    if not got:
        return ""
    svg, alt = got
    return el("section", el("h2", esc(dist.get("title", "Distribution")))
              + el("figure", svg + el("figcaption", esc(alt))), id="distribution")


def _references(citations: str) -> str:
    """The sections of docs/reference.md the checks cite, in the order first cited."""
    ids = list(dict.fromkeys(re.findall(r"\bR-[A-Z0-9]+(?:-[A-Z0-9]+)*\b", citations)))
    parts = []
    for ident in ids:
        section = reference_section(ident)
        if section:
            statement, body = section
            parts.append(el("div", el("h3", esc(f"{ident}: {statement}")) + markdown(body), class_="ref", id=ident))
    if not parts:
        return ""
    return el("section", el("h2", "Rules cited") + el("p", "From docs/reference.md, the project's reference: "
                                                       "each section the checks above cite.") + "".join(parts),
              id="reference")
