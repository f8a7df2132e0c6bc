"""`invoke check`: run scenarios for CI and judge them twice - against the expectations for the
sysctls in force (each scenario's own verdict) and against the behaviour a profile requires.

    summary = run_check(["lost-ack"], profile=load_profile("ci.toml"), from_host=True)
    Path("out.xml").write_text(junit_xml(summary))
    sys.exit(summary["exit_code"])        # 0 all matched, 1 something did not, 2 nothing could run

Where the sysctls of each lab host come from, later ones winning:

    1. --from-host   this machine's own values (read-only, /proc/sys/net/ipv4) of the TCP keys
                     in lab.core.REPORTED_SYSCTLS that exist here, for client and server - except
                     the keys a scenario sets itself (its SYSCTLS: e.g. tw-buckets' N = 3): the
                     experiment stays the experiment
    2. the profile   [sysctls.HOST] tables
    3. --sysctl      HOST:KEY=VALUE on the command line

A profile is a small TOML file (see PROFILE_EXAMPLE). A required behaviour names a scenario, one
of its checks (a name, a glob, or a list of them: some checks are named after the sysctl in
force, e.g. tw-assassination's time-wait-assassinated / time-wait-survives-rst), and what must
hold: the check passed (`passed = true`) and/or a value of the check's ``values`` (the numbers
the check used, as report.json has them) compared with `equals`, `min`/`max` or `near` +
`slack`. Every check the names match must hold it; a list value, for every element. A requirement whose scenario did not run to
a report (error, or skipped: no netem, or sysctls that rule out what it observes) is not shown, so it fails.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import json
import math
import platform
import re
import socket
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from xml.etree import ElementTree as ET

from .artifacts import ensure_dir, write_text
from .core import REPORTED_SYSCTLS, SysctlSetting, parse_sysctl
from .errors import UsageError
from .shaping import UNUSED, Shaping
from .verdict import FAIL, INCONCLUSIVE, NOT_APPLICABLE, PASS, outcome_of

__all__ = ["Profile", "Requirement", "load_profile", "parse_profile", "host_sysctls",
           "run_check", "judge", "junit_xml", "PROFILE_EXAMPLE"]

PROFILE_EXAMPLE = '''\
# twlab check profile
scenarios = ["lost-ack", "tw-assassination"]   # optional: what to run when none are named

[sysctls.client]                                # per lab host: client, router or server
"net.ipv4.tcp_rfc1337" = 1

[[require]]
scenario = "tw-assassination"
check = ["time-wait-assassinated", "time-wait-survives-rst"]   # named after tcp_rfc1337
value = "state_after"                           # a key of that check's values
equals = "TIME_WAIT"
why = "TIME-WAIT survives an in-window RST"

[[require]]
scenario = "time-wait-duration"
check = "time-wait-lasts-60s"
passed = true
value = "sampled_s"
near = 60
slack = 2.5
why = "TIME-WAIT lasts 60 s +- slack"
'''

LAB_TCP_HOSTS = ("client", "server")             # where --from-host puts the host's values
# the host's routing role is not the ends': only the router forwards
HOST_SKIPPED_KEYS = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding",
                     "net.ipv4.tcp_ehash_entries")     # the routing role; a read-only size
_TOP_KEYS = {"scenarios", "sysctls", "require"}
_CONDITIONS = ("passed", "equals", "min", "max", "near")
_REQUIRE_KEYS = {"scenario", "check", "value", "why", "slack", *_CONDITIONS}


# -- the profile -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Requirement:
    """A behaviour the profile requires of one scenario's check(s)."""

    scenario: str
    check: tuple[str, ...]                       # check names, or fnmatch globs over them
    why: str
    line: int = 0                                # where the profile says it
    value: str | None = None                     # a path into the check's values: "a", "a.0"
    conditions: dict[str, Any] = field(default_factory=dict)   # passed/equals/min/max/near+slack

    @property
    def name(self) -> str:
        return self.why or self.expected

    @property
    def expected(self) -> str:
        """The requirement in words, e.g. "values.state_after == 'TIME_WAIT'"."""
        c, parts = self.conditions, []
        if "passed" in c:
            parts.append("the check passed" if c["passed"] else "the check failed")
        v = f"values.{self.value}"
        if "equals" in c:
            parts.append(f"{v} == {c['equals']!r}")
        if "near" in c:
            parts.append(f"{v} = {c['near']:g} +- {c['slack']:g}")
        if "min" in c and "max" in c:
            parts.append(f"{c['min']:g} <= {v} <= {c['max']:g}")
        elif "min" in c:
            parts.append(f"{v} >= {c['min']:g}")
        elif "max" in c:
            parts.append(f"{v} <= {c['max']:g}")
        return f"{self.scenario} / {' or '.join(self.check)}: " + " and ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "check": list(self.check), "value": self.value,
                "conditions": self.conditions, "why": self.why, "line": self.line}


@dataclass(frozen=True)
class Profile:
    path: str
    sysctls: list[SysctlSetting] = field(default_factory=list)
    requires: list[Requirement] = field(default_factory=list)
    scenarios: list[str] = field(default_factory=list)


def load_profile(path: str | Path, hosts: tuple[str, ...] | None = None) -> Profile:
    """Read and validate a profile; any mistake is a UsageError naming the file and line."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise UsageError(f"profile {p}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise UsageError(f"profile {p}: not a text file (TOML is UTF-8)") from None
    return parse_profile(text, str(p), hosts)


def parse_profile(text: str, path: str = "<profile>", hosts: tuple[str, ...] | None = None) -> Profile:
    from scenarios import catalog

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column \d+\)", msg)
        where = f"line {m.group(1)}" if m else "end of file" if "end of document" in msg else "?"
        words = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", msg)
        raise UsageError(f"profile {path}, {where}: not valid TOML: {words[:1].lower() + words[1:]}") from None
    loc = _Locator(text)

    def bad(line: int, msg: str) -> UsageError:
        return UsageError(f"profile {path}, line {line}: {msg}")

    for key in data:
        if key not in _TOP_KEYS:
            raise bad(loc.find(key), f"unknown setting {key!r}; a profile has "
                                     "scenarios = [...], [sysctls.HOST] tables and [[require]] entries")
    known = catalog()
    if hosts is None:
        hosts = _topology_hosts()

    # scenarios = [...]
    names = data.get("scenarios", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise bad(loc.find("scenarios"), "scenarios takes a list of scenario names, e.g. [\"lost-ack\"]")
    for n in names:
        if n not in known:
            raise bad(loc.find(n, loc.find("scenarios")), _unknown_scenario(n, known))

    # [sysctls.HOST]
    settings: list[SysctlSetting] = []
    tables = data.get("sysctls", {})
    if not isinstance(tables, dict):
        raise bad(loc.find("sysctls"), "sysctls takes tables per host: [sysctls.client] ...")
    for host, kv in tables.items():
        at = loc.section(f"sysctls.{host}") or loc.find(host, loc.section("sysctls") or 1)
        if host not in hosts:
            raise bad(at, f"unknown host {host!r} under sysctls; the lab has {', '.join(hosts)}")
        if not isinstance(kv, dict):
            raise bad(at, f"sysctls.{host} takes KEY = VALUE lines, e.g. \"net.ipv4.tcp_rfc1337\" = 1")
        for key, value in _flatten(kv):
            line = loc.find(key.rsplit(".", 1)[-1], at)
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise bad(line, f"{host}: {key} takes a whole number or a string, not {value!r}")
            try:
                settings.append(parse_sysctl(f"{host}:{key}={value}"))
            except UsageError as exc:
                raise bad(line, str(exc).removeprefix("--sysctl ")) from None

    # [[require]]
    requires: list[Requirement] = []
    entries = data.get("require", [])
    if not isinstance(entries, list):
        raise bad(loc.find("require"), "require entries are written [[require]] (an array of tables)")
    for i, entry in enumerate(entries):
        at = loc.array_item("require", i) or loc.find("require")
        if not isinstance(entry, dict):
            raise bad(at, "each [[require]] is a table: scenario, check, passed / value + equals|min|max|near")
        requires.append(_requirement(entry, at, loc, bad, known))
    return Profile(path=path, sysctls=settings, requires=requires, scenarios=list(names))


def _requirement(entry: dict, at: int, loc: "_Locator", bad, known) -> Requirement:
    for key in entry:
        if key not in _REQUIRE_KEYS:
            raise bad(loc.find(key, at), f"[[require]]: unknown key {key!r}; use "
                                         + ", ".join(sorted(_REQUIRE_KEYS)))
    scenario, check = entry.get("scenario"), entry.get("check")
    if not isinstance(scenario, str) or not scenario:
        raise bad(at, "[[require]] needs scenario = \"NAME\" (see `invoke list`)")
    if scenario not in known:
        raise bad(loc.find("scenario", at), _unknown_scenario(scenario, known))
    if isinstance(check, str):
        check = [check]
    if not isinstance(check, list) or not check or not all(isinstance(x, str) and x for x in check):
        raise bad(loc.find("check", at) if "check" in entry else at,
                  f"[[require]] for {scenario} needs check = \"CHECK-NAME\": a name from its report's "
                  "checks[] (or a glob, or a list of them)")
    why = entry.get("why", "")
    if not isinstance(why, str):
        raise bad(loc.find("why", at), "why takes a string: the behaviour in words")
    value = entry.get("value")
    if value is not None:
        if not isinstance(value, str) or not value.strip(". "):
            raise bad(loc.find("value", at), "value takes a key of the check's values, e.g. \"state_after\" "
                                             "or \"bounds_s.0\"")
        value = value.strip().removeprefix("values.")
    conds: dict[str, Any] = {}
    for key in _CONDITIONS:
        if key in entry:
            conds[key] = entry[key]
    if not conds and value is None:
        raise bad(at, f"[[require]] for {scenario} / {' or '.join(check)} says nothing to hold: add "
                      "passed = true, or value = \"KEY\" with equals, min, max or near + slack")
    if "passed" in conds and not isinstance(conds["passed"], bool):
        raise bad(loc.find("passed", at), "passed takes true or false")
    compared = [k for k in ("equals", "min", "max", "near") if k in conds]
    if compared and value is None:
        raise bad(loc.find(compared[0], at), f"{compared[0]} compares a value: add value = \"KEY\" "
                                             "(a key of the check's values)")
    if value is not None and not compared:
        raise bad(loc.find("value", at), "value needs something to compare it with: equals, min, max or near + slack")
    for key in ("min", "max", "near", "slack"):
        v = entry.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise bad(loc.find(key, at), f"{key} takes a number, not {v!r}")
    if "near" in conds:
        if "slack" not in entry:
            raise bad(loc.find("near", at), "near needs slack = N (the tolerance either side)")
        if entry["slack"] < 0:
            raise bad(loc.find("slack", at), "slack takes a number of 0 or more")
        conds["slack"] = entry["slack"]
    elif "slack" in entry:
        raise bad(loc.find("slack", at), "slack goes with near = N")
    if "min" in conds and "max" in conds and conds["min"] > conds["max"]:
        raise bad(loc.find("min", at), f"min {conds['min']} is above max {conds['max']}")
    return Requirement(scenario=scenario, check=tuple(check), why=why.strip(), line=at, value=value,
                       conditions=conds)


class _Locator:
    """Line numbers for a parsed TOML text (tomllib keeps none): where a table, an array item or a
    key is written. Good enough for profiles written one key per line, as the example is."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.headers: list[tuple[int, str, bool]] = []         # (line, dotted name, is array item)
        for n, line in enumerate(self.lines, start=1):
            m = self._HEADER.match(line)
            if m:
                name = ".".join(p.strip().strip("\"'") for p in re.findall(r'"[^"]*"|\'[^\']*\'|[^.]+', m.group(2)))
                self.headers.append((n, name, m.group(1) == "[["))

    def section(self, name: str) -> int | None:
        return next((n for n, h, arr in self.headers if h == name and not arr), None)

    def array_item(self, name: str, index: int) -> int | None:
        items = [n for n, h, arr in self.headers if h == name and arr]
        return items[index] if index < len(items) else None

    def find(self, needle: str, start: int = 1) -> int:
        """The first line at or after *start* (within its table) that mentions *needle*; else *start*."""
        end = next((n for n, _, _ in self.headers if n > start), len(self.lines) + 1)
        for n in range(max(start, 1), end):
            line = self.lines[n - 1]
            if needle in line and not line.lstrip().startswith("#"):
                return n
        if start <= 1:       # top-level keys may sit anywhere before the first table
            for n, line in enumerate(self.lines, start=1):
                if needle in line and not line.lstrip().startswith("#"):
                    return n
        return max(start, 1)


def _flatten(kv: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """Bare dotted keys (net.ipv4.tcp_rfc1337 = 0) are nested tables in TOML: flatten them back."""
    out = []
    for k, v in kv.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.extend(_flatten(v, key + "."))
        else:
            out.append((key, v))
    return out


def _unknown_scenario(name: str, known) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=2, cutoff=0.6)
    return f"unknown scenario {name!r}" + (f": did you mean {' or '.join(close)}?" if close else "") + \
        " (`invoke list` shows them)"


def _topology_hosts() -> tuple[str, ...]:
    try:
        from .topology import load

        return tuple(load().hosts)
    except Exception:                      # noqa: BLE001 - the lab reports a broken compose itself
        return ("client", "router", "server")


# -- the host's own sysctls ---------------------------------------------------------------------

def host_sysctls(proc: Path = Path("/proc/sys"), hosts: tuple[str, ...] = LAB_TCP_HOSTS) -> list[SysctlSetting]:
    """This machine's current values of the lab's TCP keys (read only), for each lab end."""
    out = []
    for key in REPORTED_SYSCTLS:
        if key in HOST_SKIPPED_KEYS:
            continue
        try:
            value = " ".join((proc / key.replace(".", "/")).read_text().split())
        except OSError:
            continue                        # this kernel lacks the key (e.g. tcp_tw_reuse_delay)
        out.extend(SysctlSetting(h, key, value) for h in hosts)
    return out


def layer_sysctls(sc, from_host: list[SysctlSetting], explicit: list[SysctlSetting]) -> list[SysctlSetting]:
    """What one scenario is run with: the host's values where the scenario sets nothing itself,
    then the explicit settings (the profile's, then the command line's; the last one wins)."""
    own = {(h, k) for h, k, _ in sc.own_sysctls()}
    merged: dict[tuple[str, str], SysctlSetting] = {}
    for s in [s for s in from_host if (s.host, s.key) not in own] + list(explicit):
        merged.pop((s.host, s.key), None)
        merged[(s.host, s.key)] = s
    return list(merged.values())


# -- running ----------------------------------------------------------------------------------

def run_check(names: list[str] | None = None, *, sysctls: list[SysctlSetting] = (),
              from_host: bool = False, profile: Profile | None = None, backend: str = "auto",
              shaping: list[Shaping] = (), artifacts: Path | None = None, parallel: int = 3,
              progress: Callable[[str], None] = lambda s: None,
              runner: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run the scenarios (the named ones, else the profile's, else the whole catalog, plus any a
    requirement names), each in its own process and lab - PARALLEL_SAFE ones *parallel* at a
    time, the others alone afterwards - and judge them. Returns the summary (see judge())."""
    from scenarios import catalog, get

    from .artifacts import check_dir
    from .backends import check_name
    from .pool import run_jobs
    from .runner import _one, default_artifacts
    from .sysctls import check_keys

    if parallel < 1:
        raise UsageError("--parallel takes a whole number of 1 or more")
    cat = catalog()
    chosen = list(dict.fromkeys(names or (profile.scenarios if profile else []) or list(cat)))
    scs = {n: get(n) for n in chosen}
    for req in (profile.requires if profile else []):
        if req.scenario not in scs:
            progress(f"also running {req.scenario}: the profile requires a behaviour of it "
                     f"(line {req.line})")
            scs[req.scenario] = get(req.scenario)
    base = check_dir(Path(artifacts) if artifacts else default_artifacts("check"))
    host_vals = host_sysctls() if from_host else []
    explicit = list(profile.sysctls if profile else []) + list(sysctls)
    check_keys(explicit)                     # refused once, before any lab, not by every scenario
    check_name(backend)
    jobs = []
    for i, (name, sc) in enumerate(scs.items(), start=1):
        jobs.append({"run": i, "name": name, "backend": backend,
                     "sysctls": layer_sysctls(sc, host_vals, explicit), "artifacts": base / name,
                     "shaping": [] if sc.shaping == UNUSED else list(shaping), "compose": None,
                     "options": {}})
    started = time.time()
    results: dict[str, dict[str, Any]] = {}
    together = [j for j in jobs if scs[j["name"]].parallel_safe]
    alone = [j for j in jobs if j not in together]

    def done(job: dict, res: dict) -> None:
        res = {**res, "scenario": job["name"], "sysctls_requested": [str(s) for s in job["sysctls"]]}
        results[job["name"]] = res
        progress(f"{job['name']:<22} {res['verdict']}"
                 + (f" ({', '.join(res.get('failed_checks') or [])})" if res.get("failed_checks") else "")
                 + (f" - {res['error']}" if res.get("error") else ""))

    if runner is not None:                   # tests: judge hand-made results without a lab
        for j in jobs:
            done(j, runner(j))
    else:
        for batch, width in ((together, parallel), (alone, 1)):
            if batch:
                run_jobs(_one, batch, min(width, len(batch)), done)
    runs = []
    for j in jobs:
        res = results[j["name"]]
        report = _load_report(Path(j["artifacts"]))
        runs.append(_scenario_entry(scs[j["name"]], res, report, j))
    summary = judge(runs, profile.requires if profile else [])
    summary.update({
        "tool": "twlab check",
        "kernel": platform.release(),
        "hostname": socket.gethostname(),
        "started": _dt.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "wall_s": round(time.time() - started, 3),
        "backend": backend,
        "profile": profile.path if profile else None,
        "sysctls": {"from_host": sorted({f"{s.key}={s.value}" for s in host_vals}),
                    "profile": [str(s) for s in (profile.sysctls if profile else [])],
                    "command_line": [str(s) for s in sysctls]},
        "shaping": [str(sh) for sh in shaping],
        "artifacts": str(base),
    })
    write_text(ensure_dir(base) / "check.json", json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _load_report(artifacts: Path) -> dict[str, Any] | None:
    try:
        return json.loads((artifacts / "report.json").read_text())
    except (OSError, ValueError):
        return None


def _scenario_entry(sc, res: dict[str, Any], report: dict[str, Any] | None, job: dict) -> dict[str, Any]:
    """One scenario's outcome for the summary: pass, fail, error or skipped, with its checks."""
    entry: dict[str, Any] = {"scenario": job["name"], "artifacts": str(job["artifacts"]),
                             "sysctls_requested": res.get("sysctls_requested", [])}
    error = res.get("error")
    if res.get("verdict") == "skipped":         # lab.runner._one: NetemMissing or CannotShow
        skip = res.get("skip") or res.get("netem") or {}
        entry.update(verdict="skipped", reason=f"{skip['why']}; {skip['hint']}" if skip
                     else res.get("reason") or "")
        return entry
    if res.get("verdict") == "error":
        entry.update(verdict="error", error=error, exit_code=res.get("exit_code", 2))
        return entry
    if report is None:
        entry.update(verdict="error", error=error or "the run left no report.json", exit_code=2)
        return entry
    if report.get("verdict") == "skipped":          # every check was not applicable
        entry["reason"] = report.get("error") or "every check was not applicable"
    entry.update({
        "verdict": report.get("verdict", "fail"),
        "error": report.get("error"),
        "backend": report.get("backend"),
        "kernel": report.get("kernel"),
        "duration_s": report.get("duration_s"),
        "netem": report.get("netem"),
        "sysctls_in_force": {h: v.get("sysctls", {}) for h, v in (report.get("hosts") or {}).items()},
        "checks": report.get("checks", []),
    })
    return entry


# -- judging ----------------------------------------------------------------------------------

def judge(runs: list[dict[str, Any]], requires: list[Requirement]) -> dict[str, Any]:
    """The verdict of a check run: every scenario passed and every requirement held -> 0; any
    failure, or an error beside scenarios that did run -> 1; nothing could run at all -> 2."""
    by_name = {r["scenario"]: r for r in runs}
    reqs = [evaluate(req, by_name.get(req.scenario)) for req in requires]
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


# -- JUnit XML --------------------------------------------------------------------------------

def junit_xml(summary: dict[str, Any]) -> str:
    """The summary as JUnit XML (the Jenkins/Ant shape CI viewers read): one <testsuite> per
    scenario, one <testcase> per check (classname = scenario), a failure carrying expected vs
    observed and the citation; a skipped scenario is one skipped testcase with its reason; the
    required behaviours make their own suite."""
    root = ET.Element("testsuites", name="twlab check")
    stamp = summary.get("started") or _dt.datetime.now().isoformat(timespec="seconds")
    host = summary.get("hostname") or socket.gethostname()
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0}

    def suite(name: str, duration: float | None) -> ET.Element:
        return ET.SubElement(root, "testsuite", name=name, timestamp=stamp, hostname=host,
                             time=f"{duration or 0:.3f}")

    def close(el: ET.Element, counts: dict[str, int], duration: float | None) -> None:
        for k in ("tests", "failures", "errors", "skipped"):
            el.set(k, str(counts[k]))
            totals[k] += counts[k]
        totals["time"] += duration or 0

    for run in summary.get("scenarios", []):
        name = run["scenario"]
        el = suite(name, run.get("duration_s"))
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        props = ET.SubElement(el, "properties")
        for k, v in (("kernel", run.get("kernel") or summary.get("kernel")), ("backend", run.get("backend")),
                     ("artifacts", run.get("artifacts"))):
            if v:
                ET.SubElement(props, "property", name=k, value=str(v))
        for h, kv in (run.get("sysctls_in_force") or {}).items():
            for k, v in kv.items():
                ET.SubElement(props, "property", name=f"sysctl.{h}.{k}", value=str(v))
        if run["verdict"] in ("skipped", "error") and not run.get("checks"):
            tc = ET.SubElement(el, "testcase", classname=name, name=name)
            counts["tests"] += 1
            if run["verdict"] == "skipped":
                ET.SubElement(tc, "skipped", message=run["reason"]).text = run["reason"]
                counts["skipped"] += 1
            else:
                ET.SubElement(tc, "error", message=_one_line(run["error"]), type="LabError").text = run["error"]
                counts["errors"] += 1
        else:
            for c in run.get("checks") or []:
                _junit_case(el, name, c, counts)
            if run["verdict"] == "fail" and (run.get("error") or not run.get("checks")):
                # the run stopped short (a protocol event never came) or judged nothing
                tc = ET.SubElement(el, "testcase", classname=name, name="run-completed")
                msg = run.get("error") or "the scenario reported no checks"
                ET.SubElement(tc, "failure", type="RunIncomplete", message=_one_line(msg)).text = msg
                counts["tests"] += 1
                counts["failures"] += 1
        close(el, counts, run.get("duration_s"))

    reqs = summary.get("requirements") or []
    if reqs:
        el = suite("required behaviours", 0)
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        if summary.get("profile"):
            props = ET.SubElement(el, "properties")
            ET.SubElement(props, "property", name="profile", value=str(summary["profile"]))
        for q in reqs:
            tc = ET.SubElement(el, "testcase", classname=f"required.{q['scenario']}", name=q["name"])
            counts["tests"] += 1
            text = (f"required  {q['expected']}\nobserved  {q['observed']}\n"
                    f"profile   {summary.get('profile') or '-'}, line {q.get('line')}\n")
            if not q["passed"]:
                counts["failures"] += 1
                ET.SubElement(tc, "failure", type="RequirementNotShown",
                              message=_one_line(f"{q['name']}: required {q['expected']}; observed "
                                                f"{q['observed']}")).text = text
            else:
                ET.SubElement(tc, "system-out").text = text
        close(el, counts, 0)

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
