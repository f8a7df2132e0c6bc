"""Which counter a kernel counts a PAWS reject in TIME-WAIT in (reference R-TW-PAWS): PAWSTimewait
where it exists, PAWSEstab on kernels without it (v6.1, v6.12). The checks that read it
(tw-assassination's paws-does-not-prevent-it, wandering-duplicates' paws-in-time-wait) follow
what the run recorded, and still fail when that counter did not move."""

from __future__ import annotations

import scenarios.tw_assassination as twa
import scenarios.wandering_duplicates as wd
from scenarios._paws import OLD_TW_COUNTER, TW_COUNTER, counted, tw_counter

from .records import evidence


def test_the_counter_is_the_one_the_kernel_has():
    assert tw_counter({"TcpExtPAWSEstab": 0, "TcpExtPAWSTimewait": 0}) == TW_COUNTER
    assert tw_counter({"TcpExtPAWSEstab": 0, "TcpExtPAWSActive": 0}) == OLD_TW_COUNTER
    assert counted({"paws_tw_counter": OLD_TW_COUNTER}, {"TcpExtPAWSEstab": 1}) == ("PAWSEstab", 1)
    assert counted({}, {"TcpExtPAWSTimewait": 1, "TcpExtPAWSEstab": 3}) == ("PAWSTimewait", 1)   # older records


def _check(scenario, ev, name):
    return next(c for c in scenario.SCENARIO.judge(ev) if c.name == name)


def test_tw_assassination_on_a_kernel_without_paws_timewait_reads_paws_estab():
    ev = evidence("tw-assassination-debian-12")
    assert ev.facts["paws_tw_counter"] == OLD_TW_COUNTER
    check = _check(twa, ev, "paws-does-not-prevent-it")
    assert check.outcome == "pass", check.observed
    assert "client PAWSEstab +1" in check.observed
    assert {c.outcome for c in twa.SCENARIO.judge(ev)} <= {"pass", "n/a"}
    ev.facts["counters"]["client"].pop(OLD_TW_COUNTER)           # the counter did not move: a failure
    assert _check(twa, ev, "paws-does-not-prevent-it").outcome == "fail"


def test_wandering_duplicates_on_a_kernel_without_paws_timewait_reads_paws_estab():
    ev = evidence("wandering-duplicates-debian-12")
    a = ev.facts["a"]
    assert a["paws_tw_counter"] == OLD_TW_COUNTER
    check = _check(wd, ev, "paws-in-time-wait")
    assert check.outcome == "pass", check.observed
    assert "server PAWSEstab +1" in check.observed
    a["server_counters"].pop(OLD_TW_COUNTER)
    assert _check(wd, ev, "paws-in-time-wait").outcome == "fail"
