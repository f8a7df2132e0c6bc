"""What a scenario is: the one contract between a scenario module and the lab.

Each module in scenarios/ ends with one ``SCENARIO = Scenario(...)``; the lab reads scenarios only
through it (the runner, `check`, `matrix`, the terminal view, `list`), never through attributes of
the module. A scenario reads top to bottom as its behaviour does:

    \"\"\"docstring: intent, rules, and the timeline as a table\"\"\"

    def run(lab) -> dict: ...                 # the steps, in order; returns facts for the checks

    def closer_holds_time_wait(s: Seen) -> Check: ...   # one small function per check, in the
    def server_retransmits_fin(s: Seen) -> Check: ...   # order of the timeline they judge

    SCENARIO = Scenario(
        name="lost-ack", intent="...", run=run,
        analyse=Seen.of,                      # optional: facts every check reads, computed once
        checks=(closer_holds_time_wait, server_retransmits_fin, ...),
        ...)

Fields:

    name            kebab-case; the module is its snake_case (scenarios/lost_ack.py)
    intent          one line: what it shows and the rule it checks
    run             run(lab: lab.core.Lab) -> dict: the steps; the dict is ``facts`` in the evidence
    checks          the check functions in timeline order, each taking the analysis (or the
                    Evidence when there is no *analyse*) and returning one lab.verdict.Check; or a
                    function of the Evidence returning them (when the sysctls in force change
                    what must be observed, e.g. lost-ack without TIME-WAIT)
    analyse         optional: Evidence -> what the checks share (their own connection filter, say)
    shaping         lab.shaping.REQUIRED | OPTIONAL | UNUSED: does it need netem
    port            the port whose sockets the sampler follows
    sysctls         {host: {key: value}}: its own settings, applied before --sysctl
    parallel_safe   False for wall-clock measurements that must run alone
    beside          with parallel_safe False: a long measurement that is started first and runs
                    beside the parallel batch instead of after it (only where its values were
                    measured to be the same with company as alone)
    link            its own netem link (``--shape`` texts) when the user gives none
    intent_for      optional: sysctls in force -> the intent, when they change what the run shows
    precondition    optional: sysctls in force -> why it cannot show its behaviour, or None
    key_values      what `invoke matrix` shows of it (KeyValue), with each number's tolerance
    random_counts   its counters are counts of random events: kernels differ only in which move
    ladder_focus    optional: report -> (the client port whose ladder to draw, why), for runs of
                    many connections
    summary         optional: report -> lines the terminal view prints before the checks
    distribution    optional: report -> {"title", "xlabel", "classes": {label: [values]}}, samples
                    the HTML report plots as a distribution per class (lossy-link's close times)
    mapped_client   it runs with a v4-mapped client too (`run --mapped`: the client's sockets
                    AF_INET6, reaching the server's IPv4 address as ::ffff:a.b.c.d); its checks
                    read ``ev.options["mapped"]``
    key             optional: its lab sheet's key (a lab.sheetkey.Key): a run (lab.sheetkey.KeyRun)
                    -> {cell name: lab.sheetkey.Cell}, the values of the sheet's fill-in tables
                    (`invoke sheet NAME --key DIR`)
    stacks          the TCP stacks its ends may run (lab.gvisor; default linux only): a scenario
                    lists "gvisor" once its steps and checks work from the wire, where sock_diag
                    sees nothing; any other run with a gVisor host is skipped, saying so. A
                    mapping {host: stacks} where the ends differ (a host it omits: linux only)
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .verdict import Check

__all__ = ["Scenario", "KeyValue", "Sysctls"]

Sysctls = Mapping[str, Mapping[str, str]]        # host -> key -> value, as read back from the hosts
CheckFn = Callable[[Any], Check]


@dataclass(frozen=True)
class KeyValue:
    """One observed number `invoke matrix` shows for a scenario: *path* in the values of the
    check(s) matching *check* (fnmatch). Kernels differ when the numbers are further apart than
    abs_tol or rel_tol (a fraction); by default any difference counts."""

    label: str
    check: str
    path: str
    abs_tol: float = 0.0
    rel_tol: float = 0.0
    relative_to_first: bool = False      # a list of absolute times: show them from the first
    none_means: str | None = None        # what an observed null says (e.g. the socket was gone)
    tally: bool = False                  # a dict keyed by something run-specific (ports): count its values


@dataclass(frozen=True)
class Scenario:
    name: str
    intent: str
    run: Callable[[Any], dict]
    checks: Sequence[CheckFn] | Callable[[Any], Sequence[CheckFn]]
    analyse: Callable[[Any], Any] | None = None
    shaping: str = "optional"
    port: int = 5000
    sysctls: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    parallel_safe: bool = True
    beside: bool = False
    link: tuple[str, ...] = ()
    intent_for: Callable[[Sysctls], str] | None = None
    precondition: Callable[[Sysctls], str | None] | None = None
    key_values: tuple[KeyValue, ...] = ()
    random_counts: bool = False
    ladder_focus: Callable[[dict], tuple[int, str] | None] | None = None
    summary: Callable[[dict], list[str]] | None = None
    distribution: Callable[[dict], dict | None] | None = None
    key: Callable[[Any], Mapping[str, Any]] | None = None
    stacks: tuple[str, ...] | Mapping[str, tuple[str, ...]] = ("linux",)

    def stacks_of(self, host: str) -> tuple[str, ...]:
        """The stacks *host* may run in this scenario."""
        return self.stacks.get(host, ("linux",)) if isinstance(self.stacks, Mapping) else self.stacks
    mapped_client: bool = False

    def intent_in(self, sysctls: Sysctls) -> str:
        """What a run shows with these sysctls in force."""
        return self.intent_for(sysctls) if self.intent_for is not None else self.intent

    def cannot_show(self, sysctls: Sysctls) -> str | None:
        """Why a run with these sysctls in force cannot show the behaviour, or None."""
        return self.precondition(sysctls) if self.precondition is not None else None

    def check_functions(self, ev: Any) -> Sequence[CheckFn]:
        return self.checks(ev) if callable(self.checks) else self.checks

    def judge(self, ev: Any) -> list[Check]:
        """Every check on the run's evidence, in order. A check that raises is a bug in the lab,
        reported as that check failing with its trace (so CI notices), never a pass; the others
        are judged as usual. An analysis that raises fails every check the same way."""
        fns = self.check_functions(ev)
        try:
            seen = self.analyse(ev) if self.analyse is not None else ev
        except Exception:
            why = traceback.format_exc(limit=3)
            return [_raised(fn, why) for fn in fns]
        out = []
        for fn in fns:
            try:
                out.append(fn(seen))
            except Exception:
                out.append(_raised(fn, traceback.format_exc(limit=3)))
        return out

    def own_sysctls(self) -> list[tuple[str, str, str]]:
        """(host, key, value) of the scenario's own settings."""
        return [(h, k, str(v)) for h, kv in self.sysctls.items() for k, v in kv.items()]

    def on_stacks(self, settings: list, stacks: Mapping[str, str]) -> tuple[list, list]:
        """*settings* (SysctlSetting) split for a run whose hosts run *stacks*: (those to set, the
        scenario's own settings on a host running another stack than Linux's). A Linux sysctl does
        not reach gVisor's sockets; the scenario, listing that stack for the host, judges what
        depended on it as not applicable. What the user asked for on such a host stays, and is
        refused in one line (lab.gvisor.no_sysctls_there)."""
        own = set(self.own_sysctls())
        dropped = [s for s in settings if stacks.get(s.host, "linux") != "linux"
                   and (s.host, s.key, str(s.value)) in own]
        return [s for s in settings if s not in dropped], dropped


def _raised(fn: CheckFn, trace: str) -> Check:
    name = getattr(fn, "check_name", None) or fn.__name__.replace("_", "-")
    return Check(name, "twlab itself", "the check runs", f"the check raised (a bug in twlab): {trace}",
                 False)
