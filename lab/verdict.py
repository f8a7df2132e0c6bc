"""Checks: what was expected, what was observed, the rule that says so, pass or fail."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Check", "verdict"]


@dataclass(frozen=True)
class Check:
    name: str
    citation: str           # RFC section or kernel function (see ../shared/FACTS.md)
    expected: str
    observed: str
    passed: bool
    values: dict[str, Any] = field(default_factory=dict)   # the observed numbers the check used

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def verdict(checks: list[Check]) -> str:
    """"pass" when there is at least one check and every check passed."""
    return "pass" if checks and all(c.passed for c in checks) else "fail"
