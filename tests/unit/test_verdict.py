"""The four outcomes of a check and how they make a run's verdict (lab.verdict)."""

from __future__ import annotations

import pytest

from lab.verdict import EXIT_CODES, Check, outcome_of, verdict


def _c(outcome: str, name: str = "c") -> Check:
    if outcome == "n/a":
        return Check.not_applicable(name, "rule", "exp", "timestamps are off")
    if outcome == "inconclusive":
        return Check.inconclusive(name, "rule", "exp", "no sample after the FIN")
    return Check(name, "rule", "exp", "obs", outcome == "pass")


def test_outcome_follows_passed_and_contradictions_are_refused():
    assert Check("n", "r", "e", "o", True).outcome == "pass"
    assert Check("n", "r", "e", "o", False).outcome == "fail"
    with pytest.raises(ValueError):
        Check("n", "r", "e", "o", True, {}, "fail")
    with pytest.raises(ValueError):
        Check("n", "r", "e", "o", True, {}, "n/a")
    with pytest.raises(ValueError):
        Check("n", "r", "e", "o", False, {}, "maybe")


def test_not_applicable_and_inconclusive_never_pass():
    na, inc = _c("n/a"), _c("inconclusive")
    assert (na.passed, na.outcome) == (False, "n/a")
    assert na.observed.startswith("not applicable: timestamps are off")
    assert (inc.passed, inc.outcome) == (False, "inconclusive")
    assert inc.observed.startswith("could not observe: ")


@pytest.mark.parametrize("outcomes, want", [
    (["pass"], "pass"),
    (["pass", "n/a"], "pass"),
    (["n/a"], "skipped"),                      # nothing shown is not a pass
    (["n/a", "n/a"], "skipped"),
    (["pass", "inconclusive"], "error"),       # could not judge: exit 2, not a kernel failure
    (["inconclusive", "n/a"], "error"),
    (["pass", "fail", "inconclusive"], "fail"),  # a failure seen on real evidence stands
    (["fail"], "fail"),
    ([], "fail"),                              # a scenario that judges nothing is a bug
])
def test_run_verdict(outcomes, want):
    assert verdict([_c(o, f"c{i}") for i, o in enumerate(outcomes)]) == want
    assert verdict([_c(o, f"c{i}").to_json() for i, o in enumerate(outcomes)]) == want


def test_exit_codes():
    assert EXIT_CODES == {"pass": 0, "fail": 1, "error": 2, "skipped": 2}


def test_unjudged_keeps_what_was_seen():
    c = Check("time-wait-acks-every-fin", "rule", "exp", "3 FINs, 3 ACKs", True, {"n": 3})
    u = c.unjudged("the capture in server ended early")
    assert u.outcome == "inconclusive" and not u.passed and u.values == {"n": 3}
    assert "the capture in server ended early" in u.observed and "3 FINs, 3 ACKs" in u.observed


def test_old_reports_without_outcome():
    assert outcome_of({"passed": True}) == "pass"
    assert outcome_of({"passed": False}) == "fail"
    assert outcome_of({"passed": False, "outcome": "n/a"}) == "n/a"


def test_judged_none_is_inconclusive():
    c = Check.judged("x", "r", "e", "o", None, missing="no sample between 0.2 s and 0.4 s")
    assert c.outcome == "inconclusive" and "no sample between" in c.observed
    assert Check.judged("x", "r", "e", "o", True).outcome == "pass"
