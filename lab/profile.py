"""`invoke check`'s profile: a small TOML file of sysctls per lab host and the behaviours a CI job
requires, read and validated with the file and line of any mistake (see PROFILE_EXAMPLE and the
README). lab.requirements judges a run against the requirements."""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError
from .sysctls import SysctlSetting, parse_sysctl
from .words import did_you_mean

__all__ = ["Profile", "Requirement", "load_profile", "parse_profile", "PROFILE_EXAMPLE"]

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

    data = _toml(text, path)
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
    names = _scenario_names(data, loc, bad, known)
    settings = _sysctl_settings(data, loc, bad, hosts)
    requires = _requirements(data, loc, bad, known)
    return Profile(path=path, sysctls=settings, requires=requires, scenarios=list(names))


def _toml(text: str, path: str) -> dict[str, Any]:
    """The parsed TOML; a syntax error names its line (or the end of the file)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column \d+\)", msg)
        where = f"line {m.group(1)}" if m else "end of file" if "end of document" in msg else "?"
        words = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", msg)
        raise UsageError(f"profile {path}, {where}: not valid TOML: {words[:1].lower() + words[1:]}") from None


def _scenario_names(data: dict, loc: _Locator, bad, known) -> list[str]:
    """``scenarios = [...]``: names from the catalog."""
    names = data.get("scenarios", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise bad(loc.find("scenarios"), "scenarios takes a list of scenario names, e.g. [\"lost-ack\"]")
    for n in names:
        if n not in known:
            raise bad(loc.find(n, loc.find("scenarios")), _unknown_scenario(n, known))
    return names


def _sysctl_settings(data: dict, loc: _Locator, bad, hosts: tuple[str, ...]) -> list[SysctlSetting]:
    """``[sysctls.HOST]`` tables of KEY = VALUE, for the lab's hosts."""
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
    return settings


def _requirements(data: dict, loc: _Locator, bad, known) -> list[Requirement]:
    """The ``[[require]]`` entries."""
    requires: list[Requirement] = []
    entries = data.get("require", [])
    if not isinstance(entries, list):
        raise bad(loc.find("require"), "require entries are written [[require]] (an array of tables)")
    for i, entry in enumerate(entries):
        at = loc.array_item("require", i) or loc.find("require")
        if not isinstance(entry, dict):
            raise bad(at, "each [[require]] is a table: scenario, check, passed / value + equals|min|max|near")
        requires.append(_requirement(entry, at, loc, bad, known))
    return requires


def _requirement(entry: dict, at: int, loc: _Locator, bad, known) -> Requirement:
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
    return f"unknown scenario {name!r}{did_you_mean(name, known, n=2)} (`invoke list` shows them)"


def _topology_hosts() -> tuple[str, ...]:
    try:
        from .topology import load

        return tuple(load().hosts)
    except Exception:                      # noqa: BLE001 - the lab reports a broken compose itself
        return ("client", "router", "server")
