"""A CI run's summary as JUnit XML, in the shape Jenkins' junit-10.xsd describes (GitLab, GitHub
test reporters and pytest read the same)."""

from __future__ import annotations

import datetime as _dt
import json
import re
import socket
from typing import Any
from xml.etree import ElementTree as ET

from .verdict import FAIL, INCONCLUSIVE, NOT_APPLICABLE, outcome_of

__all__ = ["junit_xml"]


Counts = dict[str, int]          # a testsuite's tests, failures, errors and skipped


def junit_xml(summary: dict[str, Any]) -> str:
    """The summary as JUnit XML (the Jenkins/Ant shape CI viewers read): one <testsuite> per
    scenario run, one <testcase> per check (classname = the run's name: the scenario, or
    SCENARIO/v6 over IPv6), a failure carrying expected vs observed and the citation; a skipped
    scenario is one skipped testcase with its reason; the required behaviours make their own suite."""
    root = ET.Element("testsuites", name="twlab check")
    stamp = summary.get("started") or _dt.datetime.now().isoformat(timespec="seconds")
    host = summary.get("hostname") or socket.gethostname()
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0}

    def suite(name: str, duration: float | None) -> ET.Element:
        return ET.SubElement(root, "testsuite", name=name, timestamp=stamp, hostname=host,
                             time=f"{duration or 0:.3f}")

    def close(el: ET.Element, counts: Counts, duration: float | None) -> None:
        for k in ("tests", "failures", "errors", "skipped"):
            el.set(k, str(counts[k]))
            totals[k] += counts[k]
        totals["time"] += duration or 0

    for run in summary.get("scenarios", []):
        el = suite(run.get("name") or run["scenario"], run.get("duration_s"))
        close(el, _scenario_suite(el, run, summary), run.get("duration_s"))
    reqs = summary.get("requirements") or []
    if reqs:
        el = suite("required behaviours", 0)
        close(el, _requirements_suite(el, reqs, summary.get("profile")), 0)
    return _document(root, totals)


def _new_counts() -> Counts:
    return {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}


def _scenario_suite(el: ET.Element, run: dict[str, Any], summary: dict[str, Any]) -> Counts:
    """One scenario's run into its <testsuite>: its properties, then a testcase per check (or one
    for a run that was skipped or broke before it judged anything); the counts."""
    name = run.get("name") or run["scenario"]
    counts = _new_counts()
    _run_properties(el, run, summary)
    if run["verdict"] in ("skipped", "error") and not run.get("checks"):
        tc = ET.SubElement(el, "testcase", classname=name, name=name)
        counts["tests"] += 1
        if run["verdict"] == "skipped":
            ET.SubElement(tc, "skipped", message=run["reason"]).text = run["reason"]
            counts["skipped"] += 1
        else:
            ET.SubElement(tc, "error", message=_one_line(run["error"]), type="LabError").text = run["error"]
            counts["errors"] += 1
        return counts
    for c in run.get("checks") or []:
        _junit_case(el, name, c, counts)
    if run["verdict"] == "fail" and (run.get("error") or not run.get("checks")):
        # the run stopped short (a protocol event never came) or judged nothing
        tc = ET.SubElement(el, "testcase", classname=name, name="run-completed")
        msg = run.get("error") or "the scenario reported no checks"
        ET.SubElement(tc, "failure", type="RunIncomplete", message=_one_line(msg)).text = msg
        counts["tests"] += 1
        counts["failures"] += 1
    return counts


def _run_properties(el: ET.Element, run: dict[str, Any], summary: dict[str, Any]) -> None:
    """<properties>: the kernel, backend and artifacts of the run, and the sysctls in force."""
    props = ET.SubElement(el, "properties")
    for k, v in (("kernel", run.get("kernel") or summary.get("kernel")), ("backend", run.get("backend")),
                 ("family", run.get("family")), ("artifacts", run.get("artifacts"))):
        if v:
            ET.SubElement(props, "property", name=k, value=str(v))
    for h, kv in (run.get("sysctls_in_force") or {}).items():
        for k, v in kv.items():
            ET.SubElement(props, "property", name=f"sysctl.{h}.{k}", value=str(v))


def _requirements_suite(el: ET.Element, reqs: list[dict[str, Any]], profile: str | None) -> Counts:
    """The required behaviours into their <testsuite>: a testcase each, failed if not shown."""
    counts = _new_counts()
    if profile:
        props = ET.SubElement(el, "properties")
        ET.SubElement(props, "property", name="profile", value=str(profile))
    for q in reqs:
        tc = ET.SubElement(el, "testcase", classname=f"required.{q.get('run') or q['scenario']}", name=q["name"])
        counts["tests"] += 1
        text = (f"required  {q['expected']}\nobserved  {q['observed']}\n"
                f"profile   {profile or '-'}, line {q.get('line')}\n")
        if not q["passed"]:
            counts["failures"] += 1
            ET.SubElement(tc, "failure", type="RequirementNotShown",
                          message=_one_line(f"{q['name']}: required {q['expected']}; observed "
                                            f"{q['observed']}")).text = text
        else:
            ET.SubElement(tc, "system-out").text = text
    return counts


def _document(root: ET.Element, totals: dict[str, Any]) -> str:
    """The totals on <testsuites>, what XML 1.0 cannot carry replaced, indented, as text."""
    for k in ("tests", "failures", "errors"):
        root.set(k, str(totals[k]))
    root.set("time", f"{totals['time']:.3f}")
    for el in root.iter():                   # what XML 1.0 cannot carry (a stray control byte)
        el.text = _xml_safe(el.text) if el.text else el.text
        for k, v in el.attrib.items():
            el.set(k, _xml_safe(v))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _junit_case(suite: ET.Element, scenario: str, c: dict[str, Any], counts: dict[str, int]) -> None:
    """One check as a testcase: a failure, an error (inconclusive: the lab could not observe),
    skipped (not applicable), or a pass with its words in system-out."""
    tc = ET.SubElement(suite, "testcase", classname=scenario, name=c["name"])
    counts["tests"] += 1
    words = f"expected  {c['expected']}\nobserved  {c['observed']}\nrule      {c['citation']}\n"
    outcome = outcome_of(c)
    if outcome == FAIL:
        counts["failures"] += 1
        f = ET.SubElement(tc, "failure", type="CheckFailed",
                          message=_one_line(f"expected {c['expected']}; observed {c['observed']}; "
                                            f"rule {c['citation']}"))
        f.text = words + f"values    {json.dumps(c.get('values'), default=str)}\n"
    elif outcome == INCONCLUSIVE:
        counts["errors"] += 1
        ET.SubElement(tc, "error", type="Inconclusive", message=_one_line(c["observed"])).text = words
    elif outcome == NOT_APPLICABLE:
        counts["skipped"] += 1
        ET.SubElement(tc, "skipped", message=_one_line(c["observed"])).text = words
    else:
        ET.SubElement(tc, "system-out").text = words


def _xml_safe(text: str) -> str:
    return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]", "?", str(text))


def _one_line(text: str, limit: int = 1000) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."
