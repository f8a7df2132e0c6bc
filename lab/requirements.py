"""Judging a CI run (`invoke check`): every scenario's verdict, and the behaviours a profile requires
(lab.profile.Requirement) held against the checks in the reports: the summary and its exit code."""

from __future__ import annotations

import fnmatch
import json
import math
import re
from typing import TYPE_CHECKING, Any

from .verdict import FAIL, PASS, outcome_of

if TYPE_CHECKING:
    from .profile import Requirement

__all__ = ["judge", "evaluate"]


def judge(runs: list[dict[str, Any]], requires: list[Requirement]) -> dict[str, Any]:
    """The verdict of a check run: every scenario passed and every requirement held -> 0; any
    failure, or an error beside scenarios that did run -> 1; nothing could run at all -> 2."""
    reqs = [q for req in requires for q in _per_family(req, [r for r in runs if r["scenario"] == req.scenario])]
    n_checks = sum(len(r.get("checks") or []) for r in runs)
    failures = sum(1 for r in runs for c in (r.get("checks") or []) if outcome_of(c) == FAIL)
    failures += sum(1 for r in runs if r.get("error") and r["verdict"] == "fail")   # an event never came
    failures += sum(1 for r in runs if r["verdict"] == "fail" and not r.get("checks") and not r.get("error"))
    errors = sum(1 for r in runs if r["verdict"] == "error")
    skipped = sum(1 for r in runs if r["verdict"] == "skipped")
    req_failed = sum(1 for q in reqs if not q["passed"])
    ran = [r for r in runs if r["verdict"] in ("pass", "fail")]
    if not ran and errors:
        code = 2
    elif failures or errors or req_failed or any(r["verdict"] == "fail" for r in runs):
        code = 1
    else:
        code = 0
    return {
        "scenarios": runs,
        "requirements": reqs,
        "counts": {"scenarios": len(runs), "passed": sum(r["verdict"] == "pass" for r in runs),
                   "failed": sum(r["verdict"] == "fail" for r in runs), "errors": errors,
                   "skipped": skipped, "checks": n_checks, "check_failures": failures,
                   "requirements": len(reqs), "requirement_failures": req_failed},
        "verdict": "pass" if code == 0 else "fail" if code == 1 else "error",
        "exit_code": code,
    }


def _per_family(req: Requirement, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The requirement held against each run of its scenario: one per address family that ran
    (`--family both`), the IPv6 one named "... (v6)" with its run (SCENARIO/v6); "did not run"
    when none did."""
    out = []
    for run in runs or [None]:
        q = evaluate(req, run)
        family = (run or {}).get("family") or 4
        if family != 4:
            q.update(name=f"{q['name']} (v{family})", run=run.get("name"))
        out.append({**q, "family": family})
    return out


def evaluate(req: Requirement, run: dict[str, Any] | None) -> dict[str, Any]:
    """Does the scenario's report show the required behaviour? -> {passed, expected, observed}."""
    out = {**req.to_json(), "name": req.name, "expected": req.expected}
    if run is None:
        return {**out, "passed": False, "observed": f"{req.scenario} did not run"}
    if run["verdict"] == "skipped":
        return {**out, "passed": False, "observed": f"not shown: {req.scenario} was skipped ({run['reason']})"}
    if run["verdict"] == "error":
        return {**out, "passed": False, "observed": f"not shown: {req.scenario} could not run ({run['error']})"}
    checks = run.get("checks") or []
    matched = [c for c in checks if any(fnmatch.fnmatchcase(c["name"], p) for p in req.check)]
    if not matched:
        return {**out, "passed": False,
                "observed": f"no check {' or '.join(req.check)} in {req.scenario}'s report (it has: "
                            f"{', '.join(c['name'] for c in checks) or 'no checks'})"}
    words, ok = [], True
    for c in matched:
        good, said = _holds(req, c)
        ok &= good
        words.append(f"{c['name']}: {said}")
    return {**out, "passed": ok, "observed": "; ".join(words), "checks": [c["name"] for c in matched]}


def _holds(req: Requirement, check: dict[str, Any]) -> tuple[bool, str]:
    """Whether one check shows the requirement, and what it showed (with the check's own words)."""
    cond, said, ok = req.conditions, [], True
    if "passed" in cond:
        outcome = outcome_of(check)       # n/a or inconclusive shows neither pass nor fail
        ok &= outcome == (PASS if cond["passed"] else FAIL)
        said.append({PASS: "passed", FAIL: "failed"}.get(outcome, outcome))
    if req.value is not None:
        found, value = _lookup(check.get("values") or {}, req.value)
        if not found:
            keys = ", ".join(sorted((check.get("values") or {}).keys())) or "none"
            ok = False
            said.append(f"no value {req.value!r} (its values: {keys})")
        else:
            said.append(f"values.{req.value} = {json.dumps(value, default=str)}")
            if "equals" in cond:
                ok &= _equal(value, cond["equals"])
            if any(k in cond for k in ("min", "max", "near")):
                items = value if isinstance(value, list) else [value]
                nums = [x for x in items if isinstance(x, (int, float)) and not isinstance(x, bool)]
                if not items or len(nums) != len(items):
                    ok = False
                    said.append("not a number" if not isinstance(value, list) else
                                "an empty list" if not items else "not all numbers")
                for x in nums:
                    ok &= cond.get("min", -math.inf) <= x <= cond.get("max", math.inf)
                    if "near" in cond:
                        ok &= abs(x - cond["near"]) <= cond["slack"] + 1e-9
    if check.get("observed"):
        said.append(f"observed: {check['observed']}")
    return bool(ok), ", ".join(said)


def _lookup(values: Any, path: str) -> tuple[bool, Any]:
    cur = values
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and re.fullmatch(r"-?\d+", part) and -len(cur) <= int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return False, None
    return True, cur


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (isinstance(a, bool) and isinstance(b, bool) and a == b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b
