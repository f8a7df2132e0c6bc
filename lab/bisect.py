"""`invoke check --kernel PATH ... --bisect`: exit codes for ``git bisect run``.

    0    the required behaviour holds: every scenario passed and every required behaviour was shown
    1    it does not: a check failed, or a required behaviour was not shown
    125  this kernel cannot be tested: it is not there or not a kernel (the build failed), it does
         not boot, its config lacks what the lab needs, or a scenario could not run or be judged on
         it (skipped: no netem; error: a broken observation)
    128  the command itself is wrong (a misspelt scenario, a bad profile): git bisect run stops
         rather than take it for a bad commit (exit 2, twlab's usual code for bad input, would be)
"""

from __future__ import annotations

from typing import Any

from .errors import LabError, UsageError

__all__ = ["GOOD", "BAD", "UNTESTABLE", "ABORT", "code_of_summary", "code_of_error", "Guard"]

GOOD, BAD, UNTESTABLE, ABORT = 0, 1, 125, 128


def code_of_summary(summary: dict[str, Any]) -> tuple[int, str]:
    """A check's summary -> (exit code, one line saying why)."""
    runs = summary.get("scenarios") or []
    untestable = [f"{r['scenario']} {r['verdict']}" + (f" ({r.get('error')})" if r.get("error") else "")
                  for r in runs if r.get("verdict") in ("error", "skipped")]
    vm = summary.get("vm") or {}
    if vm.get("exit_code") not in (None, 0, 1):
        untestable.append(f"the check inside the VM exited {vm['exit_code']}")
    if untestable or not runs:
        return UNTESTABLE, "bisect: skip (125): cannot test this kernel: " + ("; ".join(untestable)
                                                                               or "no scenario ran")
    if summary.get("exit_code") == 0:
        return GOOD, f"bisect: good (0): {len(runs)} scenario(s) passed, the required behaviour holds"
    failed = [r["scenario"] for r in runs if r.get("verdict") != "pass"]
    unmet = [q.get("why") or q.get("scenario") for q in summary.get("requirements") or [] if not q.get("passed", True)]
    return BAD, "bisect: bad (1): " + "; ".join(
        ([f"failed: {', '.join(failed)}"] if failed else []) + ([f"not shown: {', '.join(map(str, unmet))}"]
                                                               if unmet else [])) or "bisect: bad (1)"


def code_of_error(exc: LabError, kernel_stage: bool) -> tuple[int, str]:
    """An error -> (exit code, line): anything about the kernel (given, prepared, booted) is
    125; a usage error before the kernel was looked at is 128 (stop the bisection)."""
    if isinstance(exc, UsageError) and not kernel_stage:
        return ABORT, f"twlab: {exc} (--bisect: exit 128 stops git bisect run)"
    return UNTESTABLE, f"twlab: {exc} (--bisect: cannot test this kernel, exit 125)"


class Guard:
    """`invoke check`'s body under --bisect: errors and the summary become git bisect run's codes.

        with Guard(bisect) as g:
            ...parse the flags...          # a usage error here: 128
            g.kernel_stage = True          # from here on an error is about the kernel: 125
            summary = ...; g.judge(summary)  # 0, 1 or 125 (raises Exit)
    Without --bisect it does nothing (the task's own codes stand)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.kernel_stage = bool(enabled), False

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        from invoke import Exit

        if self.enabled and isinstance(exc, LabError):
            code, line = code_of_error(exc, self.kernel_stage)
            raise Exit(line, code=code) from None
        return False

    def judge(self, summary: dict[str, Any]) -> None:
        from invoke import Exit

        if self.enabled:
            code, line = code_of_summary(summary)
            print(line)
            raise Exit(code=code)
