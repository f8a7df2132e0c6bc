"""An instructor's key to a lab sheet, filled from a real run: `invoke sheet NAME --key DIR`.

The numbers come from that run's report.json and its pcaps, so they are the numbers the students'
kernel gives. A scenario says how to compute each named cell of its sheet with a Key (its
``key`` in lab.scenario.Scenario): functions of a KeyRun, each giving one or more cells, each cell
a value and where it comes from. A cell the run cannot give (a check absent from it, a variant
the sheet does not ask about) is shown as such, with the reason, never made up.

    KEY = Key()

    @KEY.cells("fin_count", "fin_seq")
    def _fins(run: KeyRun) -> dict:
        fins = run.segments("server", sender="server", flag="FIN")
        return {"fin_count": Cell(len(fins), "server.pcap: FINs from the server"), "fin_seq": ...}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .sheets import CELL, DELIVERABLES, QUESTIONS, Sheet, answers, repo_links
from .verdict import NOT_APPLICABLE

if TYPE_CHECKING:
    from .evidence import Evidence
    from .packets import Segment

__all__ = ["Cell", "Unseen", "Key", "KeyRun", "fmt", "render_key", "render_filled", "sheet_text"]


@dataclass(frozen=True)
class Cell:
    value: Any                  # what goes in the table (None: this run does not show it)
    source: str                 # where it comes from in the run (or why it is not there)

    @property
    def text(self) -> str:
        return "—" if self.value is None else fmt(self.value)


class Unseen(Exception):
    """Raised by a key function: this run does not show these cells (the message says why)."""


def fmt(value: Any) -> str:
    """A value as a table shows it: numbers without noise, lists joined by commas."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:.0f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return str(value)


class Key:
    """A scenario's key: functions of a KeyRun, each registered for the cells it gives."""

    def __init__(self) -> None:
        self._parts: list[tuple[tuple[str, ...], Callable[[KeyRun], Any]]] = []

    def cells(self, *names: str) -> Callable:
        """Decorator: *fn(run)* gives these cells, as {name: Cell or value} (one name: a Cell or a
        value alone); it raises Unseen when the run does not show them."""
        def register(fn: Callable[[KeyRun], Any]) -> Callable[[KeyRun], Any]:
            self._parts.append((names, fn))
            return fn
        return register

    @property
    def names(self) -> list[str]:
        return [n for names, _ in self._parts for n in names]

    def __call__(self, run: KeyRun) -> dict[str, Cell]:
        out: dict[str, Cell] = {}
        for names, fn in self._parts:
            try:
                got = fn(run)
            except Unseen as exc:
                out.update({n: Cell(None, f"not in this run: {exc}") for n in names})
                continue
            except KeyError as exc:      # a value this run's checks do not carry (e.g. sock_diag's, for a
                # gVisor host, whose checks are judged from the wire): said, not guessed (a Linux run
                # whose cells went empty this way fails tests/unit/test_sheet_key.py)
                out.update({n: Cell(None, f"not in this run: its checks carry no {exc}") for n in names})
                continue
            if len(names) == 1 and not isinstance(got, dict):
                got = {names[0]: got}
            for n in names:
                v = got.get(n)
                out[n] = v if isinstance(v, Cell) else Cell(v, "") if v is not None else \
                    Cell(None, "not in this run")
        return out


class KeyRun:
    """One run as a key reads it: report.json (its checks' values, facts, counters), the
    Evidence rebuilt from it and the pcaps, and the scenario's own analysis of that evidence."""

    def __init__(self, report: dict[str, Any], ev: Evidence, scenario: Any = None) -> None:
        self.report, self.ev, self.scenario = report, ev, scenario
        self.checks = {c["name"]: c for c in report.get("checks", [])}

    @classmethod
    def from_dir(cls, path: Path | str, scenario: Any) -> KeyRun:
        """The run in *path* (its report.json and pcaps); refuses a directory without a report or
        with a run of another scenario (lab.errors.UsageError: one line, exit 2)."""
        path = Path(path)
        report_file = path / "report.json"
        if not report_file.is_file():
            raise UsageError(f"{path} has no report.json: give the artifacts directory of a run of "
                             f"{scenario.name} (`invoke run {scenario.name} --artifacts DIR`)")
        try:
            report = json.loads(report_file.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read {report_file} ({exc}): give the artifacts directory of a whole "
                             "run") from None
        if report.get("scenario") != scenario.name:
            raise UsageError(f"{path} holds a run of {report.get('scenario')!r}, not of {scenario.name}: "
                             f"give a run of {scenario.name} (`invoke run {scenario.name} --artifacts DIR`)")
        return cls(report, evidence_of(report, path), scenario)

    @classmethod
    def from_evidence(cls, ev: Evidence, scenario: Any, **report: Any) -> KeyRun:
        """A recorded run's evidence (tests/data/scenarios), judged again for its checks."""
        checks = json.loads(json.dumps([c.to_json() for c in scenario.judge(ev)], default=str))   # as in report.json
        return cls({"scenario": scenario.name, "kernel_hz": ev.hz, "checks": checks, "facts": ev.facts,
                    "counters": ev.counters, "options": ev.options, **report}, ev, scenario)

    # -- what key functions read ---------------------------------------------------------------
    def values(self, check: str) -> dict[str, Any]:
        """The values of *check*, as judged in the run; Unseen when the run has no such check, or
        the check had nothing to act on (not applicable: e.g. a gVisor host's Linux counters)."""
        if check not in self.checks:
            raise Unseen(f"the run has no check {check}")
        values = self.checks[check].get("values") or {}
        if self.checks[check].get("outcome") == NOT_APPLICABLE and not values:
            raise Unseen(f"{check} is not applicable in this run")
        return values

    def passed(self, check: str) -> bool:
        return bool(self.checks.get(check, {}).get("passed"))

    @property
    def facts(self) -> dict[str, Any]:
        return self.report.get("facts") or self.ev.facts

    def counter(self, host: str, name: str) -> int:
        return self.ev.counter(host, name)

    def sysctl(self, host: str, key: str) -> str | None:
        return self.ev.sysctl(host, key)

    @cached_property
    def seen(self) -> Any:
        """The scenario's analysis of the evidence (its ``analyse``), or the evidence itself."""
        sc = self.scenario
        return sc.analyse(self.ev) if sc is not None and sc.analyse is not None else self.ev

    def segments(self, at: str, sender: str | None = None, flag: str | None = None,
                 port: int | None = None) -> list[Segment]:
        """Segments in *at*'s capture, from *sender*, carrying *flag*, on the client's *port*."""
        segs = self.ev.segments(at, src=sender, flag=flag)
        return [s for s in segs if port is None or port in (s.sport, s.dport)]


def evidence_of(report: dict[str, Any], path: Path) -> Evidence:
    """The Evidence of a saved run: report.json's timeline, counters, sysctls, facts and samples,
    and each host's segments from its pcap in *path* (report.json's decoded copy where the pcap
    is missing)."""
    hosts = report.get("hosts") or {}
    doc = {
        "packets": report.get("packets") or {}, "timeline": report.get("timeline") or [],
        "counters": report.get("counters") or {}, "faults": report.get("faults") or {},
        "facts": report.get("facts") or {}, "hz": report.get("kernel_hz"), "options": report.get("options") or {},
        "captures": report.get("captures") or {}, "timer_samples": report.get("timer_samples") or {},
        "port": report.get("port"), "observation": report.get("observation") or {},
        "sysctls": {h: v.get("sysctls", {}) for h, v in hosts.items()},
        "addresses": {h: next(iter(v.get("addresses", {}).values()), None) for h, v in hosts.items()},
    }
    from .evidence import Evidence  # here: `invoke list` imports every key, not dpkt
    from .packets import read_pcap

    ev = Evidence.from_record(doc)
    for host in list(ev.packets):
        if (path / f"{host}.pcap").is_file():
            ev.packets[host] = read_pcap(path / f"{host}.pcap")
    return ev


def as_table(cells: Mapping[str, Cell]) -> dict[str, str]:
    return {n: c.text for n, c in cells.items()}


# -- the key as Markdown ----------------------------------------------------------------------------

def sheet_text(scenario: str, key: Path | str | None = None, lang: str = "en", out: Path | str | None = None) -> str:
    """`invoke sheet`: the student's copy of *scenario*'s sheet in *lang*, or, with *key* (a run's
    artifacts directory), the instructor's key filled from that run (two-stacks: a matrix's --out
    directory, lab.stacks_sheet). With *out* it is written there and the text says where. Bad
    input is a UsageError (nothing written)."""
    from scenarios import get

    from .artifacts import write_text
    from .sheets import check_lang, student_text
    from .stacks_sheet import SHEET, stacks_key

    lang = check_lang(lang)
    if scenario == SHEET:                  # a sheet of its own, over a matrix of stacks
        text = stacks_key(key, lang) if key else student_text(SHEET, lang)
    else:
        sc = get(scenario)
        text = render_key(sc.name, KeyRun.from_dir(key, sc), lang, where=str(key)) if key else \
            student_text(sc.name, lang)
    if out is None:
        return text
    write_text(out, text)
    return f"{'key' if key else 'sheet'}: {out}\n"


WORDS = {
    "en": {"key": "Instructor's key: ", "sheet": "Lab sheet: ", "from": "Filled from the run in",
           "answer": "**Answer.**", "evidence": "*Evidence:*", "sources": "Where each number comes from:",
           "ladder": "The run's ladder", "notes": "**Notes for the instructor.**",
           "run": "{scenario} on kernel {kernel} (HZ={hz}), backend {backend}, {started}; verdict {verdict}; "
                  "sysctls set: {sysctls}. Every number below is that run's."},
    "zh": {"key": "教师答案：", "sheet": "实验单：", "from": "数据来自运行目录",
           "answer": "**答案：**", "evidence": "*依据：*", "sources": "各数值的来源：",
           "ladder": "本次运行的时序图", "notes": "**给教师的说明：**",
           "run": "{scenario}，内核 {kernel}（HZ={hz}），后端 {backend}，{started}；结论 {verdict}；"
                  "设置的 sysctl：{sysctls}。以下数值均来自这次运行。"},
}


def render_key(name: str, run: KeyRun, lang: str = "en", where: str = "") -> str:
    """The sheet in *lang* with every fill-in cell filled from *run*, each question followed by its
    answer and the evidence of the cells it names, and the run's ladder."""
    cells = run.scenario.key(run) if run.scenario.key is not None else {}
    return render_filled(name, cells, _about(run, WORDS[lang]), _ladder(run.report), lang, where)


def render_filled(name: str, cells: Mapping[str, Cell], about: str, ladder: str, lang: str = "en",
                  where: str = "") -> str:
    """Sheet *name* in *lang* with its cells filled from *cells*: the line *about* the run(s) under
    the title, each question followed by its answer and the evidence of the cells it names, and
    the *ladder* (plain text, none when empty) at the end."""
    words = WORDS[lang]
    sheet = Sheet.load(name, lang)
    notes, answered = answers(name, lang)

    def fill(text: str, bold: bool = False) -> str:
        def one(m) -> str:
            cell = cells.get(m.group(1))
            value = (cell.text if cell else "?").replace("|", "\\|")
            return f"**{value}**" if bold else value
        return CELL.sub(one, text)

    title = sheet.title.removeprefix(words["sheet"])
    out = [f"# {words['key']}{title}\n\n", f"> {words['from']} `{where}`: {about}\n\n"]
    if notes:
        out.append(f"{words['notes']} {fill(notes)}\n\n")
    out.append(sheet.intro.lstrip("\n"))
    for i, (heading, body) in enumerate(sheet.sections):
        if i == DELIVERABLES:
            body = fill(body) + _sources(CELL.findall(body), cells, words)
        elif i == QUESTIONS:
            body = _answered(sheet.questions(), answered, cells, words, fill)
        out.append(f"## {heading}\n{body}")
    if ladder:
        out.append(f"\n## {words['ladder']}\n\n```\n{ladder}\n```\n")
    return repo_links("".join(out))


def _about(run: KeyRun, words: dict[str, str]) -> str:
    import datetime as dt

    from .report import _tally

    r = run.report
    started = dt.datetime.fromtimestamp(r["started"]).strftime("%Y-%m-%d %H:%M") if r.get("started") else "-"
    verdict = f"{str(r.get('verdict', '-')).upper()} ({_tally(r.get('checks', []))})"
    return words["run"].format(scenario=r.get("scenario"), kernel=r.get("kernel", "-"), hz=r.get("kernel_hz"),
                               backend=r.get("backend", "-"), started=started, verdict=verdict,
                               sysctls=", ".join(r.get("sysctls_requested") or []) or "-")


def _sources(names: list[str], cells: Mapping[str, Cell], words: dict[str, str]) -> str:
    lines = [f"\n{words['sources']}\n\n"]
    for n in names:
        c = cells.get(n) or Cell(None, "the scenario's key does not compute it")
        lines.append(f"- `{n}` = {c.text}" + (f": {c.source}" if c.source else "") + "\n")
    return "".join(lines) + "\n"


def _answered(questions: list[str], answered: dict[int, str], cells: Mapping[str, Cell],
              words: dict[str, str], fill: Callable[..., str]) -> str:
    out = ["\n"]
    for n, q in enumerate(questions, start=1):
        text = answered.get(n, "-")
        out.append(q + "\n\n" + _indent(f"{words['answer']} {fill(text, bold=True)}") + "\n")
        used = list(dict.fromkeys(CELL.findall(text)))
        if used:
            ev = "; ".join(f"`{u}` = {cells[u].text}" + (f" ({cells[u].source})" if cells[u].source else "")
                           for u in used if u in cells)
            out.append("\n" + _indent(f"{words['evidence']} {ev}") + "\n")
        out.append("\n")
    return "".join(out)


def _indent(text: str) -> str:
    return "\n".join(("   " + line) if line.strip() else "" for line in text.splitlines())


def _ladder(report: dict[str, Any]) -> str:
    """The run's ladder as plain text (lab.report's), for the run's one connection in focus."""
    if not report.get("packets"):
        return ""
    from .report import _focus, ladder

    port, _ = _focus(report)
    return "\n".join(line.plain.rstrip() for line in ladder(report, port=port))
