"""Checks and verdicts: what was expected, what was observed, the rule that says so, and the outcome.

A check has one of four outcomes:

    pass           the observation shows the rule holding
    fail           the observation shows the rule broken: a kernel (or sysctl) result
    n/a            the rule has nothing to act on in this run (e.g. PAWS with timestamps off):
                   said with the reason, never counted as a pass
    inconclusive   the observation the check needs is missing or broken (no sample where one was
                   needed, a capture that ended early, the lab stopped mid-measurement): the lab
                   cannot judge; never counted as a fail

A run's verdict follows from its checks: ``fail`` if any check failed; else ``error`` (exit 2,
"could not judge") if any was inconclusive; else ``pass`` if at least one passed; else ``skipped``
(every check not applicable: nothing was shown). ``EXIT_CODES`` maps verdicts to the CLI's codes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Check", "verdict", "outcome_of", "batch_exit_code", "EXIT_CODES", "PASS", "FAIL", "NOT_APPLICABLE",
           "INCONCLUSIVE", "OUTCOMES", "RUN_VERDICTS"]

PASS, FAIL, NOT_APPLICABLE, INCONCLUSIVE = "pass", "fail", "n/a", "inconclusive"
OUTCOMES = (PASS, FAIL, NOT_APPLICABLE, INCONCLUSIVE)

# a run's verdict -> the exit code of `run` (and the word the summaries count it under)
EXIT_CODES = {"pass": 0, "fail": 1, "error": 2, "skipped": 2}
RUN_VERDICTS = tuple(EXIT_CODES)


@dataclass(frozen=True)
class Check:
    name: str
    citation: str           # RFC section, kernel function, or the lab's reference
    expected: str
    observed: str
    passed: bool            # True only for the outcome "pass" (kept for report.json readers)
    values: dict[str, Any] = field(default_factory=dict)   # the observed numbers the check used
    outcome: str = ""       # pass | fail | n/a | inconclusive; derived from *passed* when empty

    def __post_init__(self) -> None:
        outcome = self.outcome or (PASS if self.passed else FAIL)
        if outcome not in OUTCOMES:
            raise ValueError(f"check {self.name}: unknown outcome {outcome!r}")
        if self.passed != (outcome == PASS):
            raise ValueError(f"check {self.name}: passed={self.passed} contradicts outcome {outcome!r}")
        object.__setattr__(self, "outcome", outcome)

    @classmethod
    def not_applicable(cls, name: str, citation: str, expected: str, why: str,
                       values: dict[str, Any] | None = None) -> Check:
        """The rule has nothing to act on in this run; *why* says what is missing from the setup."""
        return cls(name, citation, expected, f"not applicable: {why}", False, dict(values or {}),
                   NOT_APPLICABLE)

    @classmethod
    def inconclusive(cls, name: str, citation: str, expected: str, why: str,
                     values: dict[str, Any] | None = None) -> Check:
        """The evidence the check needs is missing or broken; *why* names what and where."""
        return cls(name, citation, expected, f"could not observe: {why}", False, dict(values or {}),
                   INCONCLUSIVE)

    @classmethod
    def judged(cls, name: str, citation: str, expected: str, observed: str, ok: bool | None,
               values: dict[str, Any] | None = None, missing: str = "") -> Check:
        """pass/fail from *ok*; inconclusive when *ok* is None (the observation was missing:
        *missing* says which)."""
        if ok is None:
            return cls.inconclusive(name, citation, expected, missing or observed, values)
        return cls(name, citation, expected, observed, bool(ok), dict(values or {}))

    def unjudged(self, why: str) -> Check:
        """This check made inconclusive: its evidence turned out broken (*why*); what it saw is
        kept in its observed text."""
        return Check(self.name, self.citation, self.expected,
                     f"could not observe: {why} (what was seen: {self.observed})", False,
                     dict(self.values), INCONCLUSIVE)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def outcome_of(check: dict[str, Any]) -> str:
    """A check's outcome as report.json holds it (reports before outcomes existed: from passed)."""
    return check.get("outcome") or (PASS if check.get("passed") else FAIL)


def verdict(checks: Iterable[Check | dict[str, Any]]) -> str:
    """A run's verdict from its checks (see the module's docstring). No checks at all: fail (a
    scenario that judges nothing is a bug, not a pass)."""
    outcomes = [c.outcome if isinstance(c, Check) else outcome_of(c) for c in checks]
    if not outcomes or FAIL in outcomes:
        return "fail"
    if INCONCLUSIVE in outcomes:
        return "error"
    if PASS in outcomes:
        return "pass"
    return "skipped"


def batch_exit_code(verdicts: Iterable[str]) -> int:
    """The exit code of a batch of runs (run all, --repeat, stability, matrix): 0 when every run
    passed or was skipped and at least one ran; 2 when none could run or be judged (errors and
    skips only); 1 otherwise."""
    verdicts = list(verdicts)
    if not any(v in ("pass", "fail") for v in verdicts):
        return 2
    return 0 if all(v in ("pass", "skipped") for v in verdicts) else 1
