"""`invoke check --bisect`: git bisect run's exit codes (0 good, 1 bad, 125 skip, 128 stop) from a
check's summary or the error that ended it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from invoke import Exit

from lab.bisect import ABORT, BAD, GOOD, UNTESTABLE, Guard, code_of_error, code_of_summary
from lab.errors import EnvError, UsageError

REPO = Path(__file__).resolve().parents[2]


def summary(*verdicts: str, exit_code: int | None = None, vm_code: int | None = 0, requirements=()) -> dict:
    runs = [{"scenario": f"s{i}", "verdict": v, "error": "no netem" if v == "skipped" else None}
            for i, v in enumerate(verdicts)]
    code = exit_code if exit_code is not None else (0 if all(v == "pass" for v in verdicts) else 1)
    return {"scenarios": runs, "exit_code": code, "requirements": list(requirements),
            **({"vm": {"exit_code": vm_code}} if vm_code is not None else {})}


def test_all_passed_is_good():
    code, line = code_of_summary(summary("pass", "pass"))
    assert code == GOOD == 0 and line.startswith("bisect: good (0): 2 scenario(s) passed")


def test_a_failed_check_or_an_unmet_requirement_is_bad():
    code, line = code_of_summary(summary("pass", "fail"))
    assert code == BAD == 1 and "failed: s1" in line
    code, line = code_of_summary(summary("pass", exit_code=1,
                                         requirements=[{"passed": False, "why": "rfc1337 survives"}]))
    assert code == BAD and "not shown: rfc1337 survives" in line


@pytest.mark.parametrize("s", [summary("pass", "skipped"), summary("error"), summary(),
                               summary("pass", vm_code=2)],
                         ids=["skipped", "error", "nothing-ran", "vm-exit-2"])
def test_what_cannot_be_judged_on_this_kernel_is_skip(s):
    code, line = code_of_summary(s)
    assert code == UNTESTABLE == 125 and line.startswith("bisect: skip (125): cannot test this kernel")


def test_errors_before_the_kernel_stop_the_bisection_after_it_skip():
    assert code_of_error(UsageError("unknown scenario 'x'"), kernel_stage=False)[0] == ABORT == 128
    assert code_of_error(UsageError("--kernel /k: no such file"), kernel_stage=True)[0] == UNTESTABLE
    code, line = code_of_error(EnvError("the kernel k did not boot"), kernel_stage=True)
    assert code == UNTESTABLE and line.startswith("twlab: the kernel k did not boot") and "\n" not in line


def test_the_guard_turns_them_into_exits_and_does_nothing_without_bisect(capsys):
    with pytest.raises(Exit) as e, Guard(True) as g:
        g.kernel_stage = True
        raise EnvError("the kernel k did not boot")
    assert e.value.code == 125
    with pytest.raises(Exit) as e, Guard(True) as g:
        g.judge(summary("pass", "fail"))
    assert e.value.code == 1 and "bisect: bad (1)" in capsys.readouterr().out
    with pytest.raises(Exit) as e, Guard(True) as g:
        g.judge(summary("pass"))
    assert e.value.code == 0
    with pytest.raises(EnvError), Guard(False) as g:                  # the task's own codes stand
        raise EnvError("x")
    with Guard(False) as g:
        g.judge(summary("fail"))


def test_a_misspelt_scenario_exits_128_through_the_task():
    done = subprocess.run([sys.executable, "-m", "invoke", "check", "--bisect", "--scenario", "lost-akc"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 128, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "exit 128 stops git bisect run" in done.stderr


def test_a_kernel_path_that_is_not_there_exits_125_through_the_task(tmp_path):
    done = subprocess.run([sys.executable, "-m", "invoke", "check", "--bisect", "--scenario", "lost-ack",
                           "--kernel", str(tmp_path / "linux" / "bzImage")],
                          cwd=REPO, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 125, done.stderr
    assert "no such file or directory" in done.stderr and "exit 125" in done.stderr
